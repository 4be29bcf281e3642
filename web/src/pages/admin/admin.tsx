import { Link, navigate } from "../../router.tsx";
import { type Access, access, allows } from "../../state/access.ts";
import { useStore } from "../../state/store.ts";
import { ErrorNotice, Loading } from "../../ui/feedback.tsx";
import { usePageTitle } from "../../ui/page-title.ts";
import { ClientsAdmin } from "./clients.tsx";
import { GroupsAdmin } from "./groups.tsx";
import { axesSpec, machinesSpec, ResourceAdmin, toolsSpec } from "./resources.tsx";
import { UsersAdmin } from "./users.tsx";

type Can = (code: string) => boolean;

/**
 * A machine-data page is for changing things: viewing alone is what the fleet and history pages
 * are for. Axes and tools are listed one machine at a time, so they need machines too.
 */
const managesData =
  (resource: string, ...listedBy: string[]) =>
  (can: Can) =>
    [resource, ...listedBy].every((name) => can(`${name}.view`)) &&
    ["add", "change", "delete"].some((action) => can(`${resource}.${action}`));

const sections = [
  {
    path: "users",
    label: "Users",
    action: "manage users",
    opens: (can: Can) => can("user.view"),
    render: () => <UsersAdmin />,
  },
  {
    path: "groups",
    label: "Groups & permissions",
    action: "manage groups and permissions",
    opens: (can: Can) => can("group.view"),
    render: () => <GroupsAdmin />,
  },
  {
    path: "clients",
    label: "OAuth2 clients",
    action: "manage OAuth2 clients",
    opens: (can: Can) => can("oauthclient.view"),
    render: () => <ClientsAdmin />,
  },
  {
    path: "machines",
    label: "Machines",
    action: "manage machines",
    opens: managesData("machine"),
    render: () => <ResourceAdmin key="machines" spec={machinesSpec} />,
  },
  {
    path: "axes",
    label: "Axes",
    action: "manage axes",
    opens: managesData("axis", "machine"),
    render: () => <ResourceAdmin key="axes" spec={axesSpec} />,
  },
  {
    path: "tools",
    label: "Tools",
    action: "manage tools",
    opens: managesData("tool", "machine"),
    render: () => <ResourceAdmin key="tools" spec={toolsSpec} />,
  },
];

/** The administration sections this user's permissions open, in the order they are listed. */
export function openSections(current: Access) {
  return sections.filter((section) => section.opens((code) => allows(current, code)));
}

export function AdminPage({ section }: { section: string }) {
  const current = useStore(access);
  const chosen = sections.find((item) => item.path === section);
  usePageTitle(chosen?.label, "Administration");
  if (current.status === "unknown") return <Loading what="your permissions" />;
  if (current.status === "failed")
    return <ErrorNotice error={current.error} action="see your permissions" />;
  const open = openSections(current);
  const first = open[0];
  if (!chosen && first) {
    queueMicrotask(() => navigate(`/admin/${first.path}`, { replace: true }));
    return null;
  }
  const body =
    chosen && open.includes(chosen) ? (
      chosen.render()
    ) : (
      <div class="notice notice-info">
        <strong>Not available to you</strong>
        <span>
          Your groups do not allow you to {chosen?.action ?? "administer anything here"}. An Admin
          can change that.
        </span>
      </div>
    );
  return (
    <div class="admin">
      <h1 class="visually-hidden">Administration</h1>
      {open.length > 0 && (
        <nav class="subnav" aria-label="Administration">
          {open.map((item) => (
            <Link key={item.path} href={`/admin/${item.path}`}>
              {item.label}
            </Link>
          ))}
        </nav>
      )}
      <div class="admin-body">{body}</div>
    </div>
  );
}
