import { Link, navigate } from "../../router.tsx";
import { adminAccess } from "../../state/access.ts";
import { useStore } from "../../state/store.ts";
import { Loading } from "../../ui/feedback.tsx";
import { usePageTitle } from "../../ui/page-title.ts";
import { ClientsAdmin } from "./clients.tsx";
import { GroupsAdmin } from "./groups.tsx";
import { axesSpec, machinesSpec, ResourceAdmin, toolsSpec } from "./resources.tsx";
import { UsersAdmin } from "./users.tsx";

const sections = [
  { path: "users", label: "Users", render: () => <UsersAdmin /> },
  { path: "groups", label: "Groups & permissions", render: () => <GroupsAdmin /> },
  { path: "clients", label: "OAuth2 clients", render: () => <ClientsAdmin /> },
  {
    path: "machines",
    label: "Machines",
    render: () => <ResourceAdmin key="machines" spec={machinesSpec} />,
  },
  { path: "axes", label: "Axes", render: () => <ResourceAdmin key="axes" spec={axesSpec} /> },
  { path: "tools", label: "Tools", render: () => <ResourceAdmin key="tools" spec={toolsSpec} /> },
];

export function AdminPage({ section }: { section: string }) {
  const access = useStore(adminAccess);
  const current = sections.find((item) => item.path === section);
  usePageTitle(current?.label, "Administration");
  if (access === "unknown") return <Loading what="your permissions" />;
  if (access === "no") {
    return (
      <div class="notice notice-error" role="alert">
        <strong>Administration is for Admins</strong>
        <span>
          Your groups do not include administration. An Admin can add you to the Admin group.
        </span>
      </div>
    );
  }
  if (!current) {
    queueMicrotask(() => navigate("/admin/users", { replace: true }));
    return null;
  }
  return (
    <div class="admin">
      <h1 class="visually-hidden">Administration</h1>
      <nav class="subnav" aria-label="Administration">
        {sections.map((item) => (
          <Link key={item.path} href={`/admin/${item.path}`}>
            {item.label}
          </Link>
        ))}
      </nav>
      <div class="admin-body">{current.render()}</div>
    </div>
  );
}
