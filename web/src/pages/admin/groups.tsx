import { useMemo, useRef, useState } from "preact/hooks";
import { api } from "../../api/instance.ts";
import type { Group, Permission } from "../../api/types.ts";
import { useLeaveGuard } from "../../router.tsx";
import { access, allows, checkAccess } from "../../state/access.ts";
import { useQuery } from "../../state/query.ts";
import { useStore } from "../../state/store.ts";
import { ErrorNotice, Loading } from "../../ui/feedback.tsx";
import {
  Field,
  FormError,
  type FormFailure,
  formFailure,
  SubmitButton,
  useFocusOnRefusal,
  useSubmit,
} from "../../ui/form.tsx";

/** Permission codes are `resource.action`; the matrix shows one row per code, one column per group. */
export function GroupsAdmin() {
  const held = useStore(access);
  const mayChange = allows(held, "group.change");
  const mayAdd = allows(held, "group.add");
  const groups = useQuery(() => api.get<Group[]>("/groups/"), []);
  const permissions = useQuery(() => api.get<Permission[]>("/permissions/"), []);
  const [draft, setDraft] = useState<Map<string, Set<string>> | null>(null);
  const [message, setMessage] = useState<string | undefined>(undefined);
  const [failure, setFailure] = useState<Error | undefined>(undefined);
  const [newGroup, setNewGroup] = useState("");
  const [newGroupFailure, setNewGroupFailure] = useState<FormFailure>({
    fields: {},
    general: undefined,
  });
  const newGroupForm = useRef<HTMLFormElement>(null);
  const saveButton = useRef<HTMLButtonElement>(null);
  useFocusOnRefusal(newGroupForm, newGroupFailure);

  const saved = useMemo(
    () => new Map((groups.data ?? []).map((group) => [group.name, new Set(group.permissions)])),
    [groups.data],
  );
  // The draft over what is saved: a group created meanwhile joins the matrix beside the edits.
  const current = draft ? new Map([...saved, ...draft]) : saved;
  const changed = [...current].filter(([name, codes]) => {
    const before = saved.get(name);
    return !before || before.size !== codes.size || [...codes].some((code) => !before.has(code));
  });
  useLeaveGuard(
    changed.length > 0,
    "Leave without saving? Your changes to the groups' permissions will be lost.",
  );

  // A second press while saving is ignored, as a form's second submit is.
  const { busy: saving, submit: save } = useSubmit(async () => {
    if (changed.length === 0) return;
    try {
      for (const [name, codes] of changed) {
        await api.request("PUT", `/groups/${encodeURIComponent(name)}/permissions/`, {
          body: { permissions: [...codes].sort() },
        });
      }
      setMessage(`Saved permissions of ${changed.map(([name]) => name).join(", ")}.`);
      setFailure(undefined);
      setDraft(null);
      groups.reload();
      // The user's own groups may be among those changed: what the console offers follows.
      void checkAccess();
    } catch (error) {
      setFailure(error as Error);
      setMessage(undefined);
    }
  });

  const { busy: creatingGroup, submit: createGroup } = useSubmit(async () => {
    try {
      await api.request("POST", "/groups/", { body: { name: newGroup.trim() } });
      setMessage(`Created group ${newGroup.trim()}.`);
      setNewGroup("");
      setNewGroupFailure({ fields: {}, general: undefined });
      groups.reload();
    } catch (error) {
      setNewGroupFailure(formFailure(error, ["name"]));
      setMessage(undefined);
    }
  });

  if (groups.error && !groups.data)
    return <ErrorNotice error={groups.error} action="manage groups" />;
  if (!groups.data || !permissions.data) return <Loading what="groups" />;

  const toggle = (group: string, code: string) => {
    const next = new Map([...current].map(([name, codes]) => [name, new Set(codes)]));
    const codes = next.get(group)!;
    if (codes.has(code)) codes.delete(code);
    else codes.add(code);
    setDraft(next);
  };

  const byResource = new Map<string, Permission[]>();
  for (const permission of permissions.data) {
    const resource = permission.code.split(".")[0] ?? permission.code;
    byResource.set(resource, [...(byResource.get(resource) ?? []), permission]);
  }
  const names = groups.data.map((group) => group.name);

  return (
    <section aria-labelledby="groups-title">
      <div class="page-head">
        <div>
          <h2 id="groups-title">Groups and permissions</h2>
          <p class="muted">A user may do what any of their groups may do.</p>
        </div>
        {mayChange && (
          <div class="toolbar">
            {changed.length > 0 && (
              <button
                type="button"
                class="button"
                onClick={() => {
                  setDraft(null);
                  // Discard goes with the edits it discards; Save stays beside where it was, so
                  // the keyboard's place moves one button instead of to the page's top.
                  saveButton.current?.focus();
                }}
              >
                Discard
              </button>
            )}
            {/* Said to be disabled, not disabled: once saved there is nothing left to save, and a
                disabled button would drop the focus of whoever pressed it to the page's top. */}
            <button
              type="button"
              class="button button-primary"
              ref={saveButton}
              aria-disabled={changed.length === 0 || saving || undefined}
              aria-busy={saving || undefined}
              onClick={save}
            >
              {saving ? "Saving…" : `Save changes${changed.length ? ` (${changed.length})` : ""}`}
            </button>
          </div>
        )}
      </div>
      {message && (
        <p class="notice notice-success" role="status">
          {message}
        </p>
      )}
      {failure && <ErrorNotice error={failure} action="change permissions" />}
      <div class="panel table-scroll">
        <table class="table matrix" aria-label="Permissions by group">
          <thead>
            <tr>
              <th scope="col">Permission</th>
              {names.map((name) => (
                <th key={name} scope="col" class="center">
                  {name}
                </th>
              ))}
            </tr>
          </thead>
          {[...byResource].map(([resource, codes]) => (
            <tbody key={resource}>
              <tr class="matrix-group">
                <th colSpan={names.length + 1} scope="rowgroup">
                  {resource}
                </th>
              </tr>
              {codes.map((permission) => (
                <tr key={permission.code}>
                  <th scope="row">
                    <code>{permission.code}</code>
                    <div class="muted small">{permission.description}</div>
                  </th>
                  {names.map((name) => (
                    <td key={name} class="center">
                      <input
                        type="checkbox"
                        aria-label={`${name}: ${permission.code}`}
                        checked={current.get(name)?.has(permission.code) ?? false}
                        disabled={!mayChange}
                        onChange={() => toggle(name, permission.code)}
                      />
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          ))}
        </table>
      </div>
      {mayAdd && (
        <form
          ref={newGroupForm}
          class="panel form form-inline"
          onSubmit={createGroup}
          aria-label="New group"
          noValidate
        >
          <FormError message={newGroupFailure.general} />
          <Field
            label="New group"
            name="name"
            value={newGroup}
            onValue={setNewGroup}
            errors={newGroupFailure.fields.name}
          />
          <SubmitButton busy={creatingGroup} class="button">
            Create group
          </SubmitButton>
        </form>
      )}
    </section>
  );
}
