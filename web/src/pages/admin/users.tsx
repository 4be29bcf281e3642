import { useRef, useState } from "preact/hooks";
import { api } from "../../api/instance.ts";
import type { Group, User } from "../../api/types.ts";
import { access, allows, checkAccess, isMe } from "../../state/access.ts";
import { useQuery } from "../../state/query.ts";
import { useStore } from "../../state/store.ts";
import { ConfirmButton } from "../../ui/confirm-button.tsx";
import { ErrorNotice, Loading } from "../../ui/feedback.tsx";
import {
  Field,
  FormError,
  type FormFailure,
  formFailure,
  returnFocus,
  SelectField,
  SubmitButton,
  useFocusOnRefusal,
  useSubmit,
} from "../../ui/form.tsx";

export function UsersAdmin() {
  const permissions = useStore(access);
  const may = (code: string) => allows(permissions, code);
  // Seeing users does not take seeing groups: without it, each user's groups are listed as text.
  const seesGroups = may("group.view");
  const users = useQuery(() => api.get<User[]>("/users/"), []);
  const groups = useQuery(
    () => (seesGroups ? api.get<Group[]>("/groups/") : Promise.resolve([])),
    [seesGroups],
  );
  const [message, setMessage] = useState<string | undefined>(undefined);
  const [failure, setFailure] = useState<Error | undefined>(undefined);
  const [creating, setCreating] = useState(false);
  // The New user button: focus goes back there when the form closes (it is gone with the form).
  const opener = useRef<HTMLElement | null>(null);
  const heading = useRef<HTMLHeadingElement>(null);

  const act = async (work: () => Promise<unknown>, done: string) => {
    try {
      const answer = await work();
      const text = (answer as { message?: string } | undefined)?.message;
      setMessage(text ?? done);
      setFailure(undefined);
    } catch (error) {
      setFailure(error as Error);
      setMessage(undefined);
    }
    users.reload();
  };

  if (users.error && !users.data) return <ErrorNotice error={users.error} action="manage users" />;
  if (!users.data || !groups.data) return <Loading what="users" />;
  const groupNames = groups.data.map((group) => group.name);
  const changesMembership = seesGroups && may("group.change");

  return (
    <section aria-labelledby="users-title">
      <div class="page-head">
        <h2 id="users-title" ref={heading} tabIndex={-1}>
          Users
        </h2>
        {may("user.add") && (
          <button
            type="button"
            class="button button-primary"
            onClick={(event) => {
              opener.current = event.currentTarget;
              // What the last action said is not about the form now opened.
              setMessage(undefined);
              setFailure(undefined);
              setCreating(true);
            }}
          >
            New user
          </button>
        )}
      </div>
      {message && (
        <p class="notice notice-success" role="status">
          {message}
        </p>
      )}
      {failure && <ErrorNotice error={failure} action="make this change" />}
      {creating && (
        <NewUserForm
          groups={changesMembership ? groupNames : []}
          onDone={(created) => {
            setCreating(false);
            returnFocus(opener.current, heading.current);
            if (created) {
              setMessage(`Created user ${created}.`);
              users.reload();
            }
          }}
        />
      )}
      <div class="panel table-scroll">
        <table class="table" aria-label="Users">
          <thead>
            <tr>
              <th scope="col">User</th>
              <th scope="col">Groups</th>
              <th scope="col">Active</th>
              <th scope="col">Last sign-in</th>
              <th scope="col" class="actions">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {users.data.map((user) => (
              <tr key={user.id}>
                <th scope="row">
                  <div>{user.username}</div>
                  <div class="muted small">
                    {[`${user.first_name} ${user.last_name}`.trim(), user.email]
                      .filter(Boolean)
                      .join(" · ")}
                  </div>
                </th>
                <td>
                  {!seesGroups && (user.groups.join(", ") || <span class="muted">none</span>)}
                  {seesGroups && (
                    <fieldset class="chips">
                      <legend class="visually-hidden">Groups of {user.username}</legend>
                      {groupNames.map((group) => {
                        const member = user.groups.includes(group);
                        return (
                          <label key={group} class={`chip${member ? " chip-on" : ""}`}>
                            <input
                              type="checkbox"
                              checked={member}
                              disabled={!changesMembership}
                              onChange={() =>
                                act(
                                  () =>
                                    api.request(
                                      "POST",
                                      member ? "/remove-user-from-group/" : "/add-user-to-group/",
                                      {
                                        body: { username: user.username, group },
                                      },
                                    ),
                                  "",
                                ).then(() => {
                                  // Their own groups decide what this console offers them.
                                  if (isMe(permissions, user.id)) void checkAccess();
                                })
                              }
                            />
                            {group}
                          </label>
                        );
                      })}
                    </fieldset>
                  )}
                </td>
                <td>
                  <label class="switch">
                    <input
                      type="checkbox"
                      checked={user.is_active}
                      disabled={!may("user.change")}
                      onChange={() =>
                        act(
                          () =>
                            api.request("PATCH", `/users/${user.id}/`, {
                              body: { is_active: !user.is_active },
                            }),
                          `${user.username} is now ${user.is_active ? "inactive" : "active"}.`,
                        )
                      }
                    />
                    <span class="visually-hidden">{user.username} is active</span>
                  </label>
                </td>
                <td class="muted">
                  {user.last_login ? new Date(user.last_login).toLocaleString() : "never"}
                </td>
                <td class="actions">
                  {!isMe(permissions, user.id) && may("user.delete") && (
                    <ConfirmButton
                      label="Delete"
                      question={`Delete ${user.username}?`}
                      onConfirm={() =>
                        act(
                          () => api.request("DELETE", `/users/${user.id}/`),
                          `Deleted ${user.username}.`,
                        )
                      }
                    />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

const userFields = ["username", "password", "email", "first_name", "last_name", "group"];

function NewUserForm({
  groups,
  onDone,
}: {
  groups: string[];
  onDone: (username: string | null) => void;
}) {
  const [values, setValues] = useState<Record<string, string>>({
    group: groups.includes("Operator") ? "Operator" : "",
  });
  const [failure, setFailure] = useState<FormFailure>({ fields: {}, general: undefined });
  const set = (name: string) => (value: string) => setValues((old) => ({ ...old, [name]: value }));
  const form = useRef<HTMLFormElement>(null);
  useFocusOnRefusal(form, failure);

  const { busy, submit } = useSubmit(async () => {
    const { group, ...user } = values;
    try {
      // The same registration any client uses; then an Admin's group assignment.
      await api.request("POST", "/register/", { body: { username: "", password: "", ...user } });
      if (group) {
        await api.request("POST", "/add-user-to-group/", {
          body: { username: user.username, group },
        });
      }
      onDone(user.username ?? "");
    } catch (error) {
      setFailure(formFailure(error, userFields));
    }
  });

  return (
    <form ref={form} class="panel form" onSubmit={submit} aria-label="New user" noValidate>
      <h3>New user</h3>
      <FormError message={failure.general} />
      <div class="form-grid">
        <Field
          label="Username"
          name="username"
          value={values.username ?? ""}
          onValue={set("username")}
          errors={failure.fields.username}
          autoComplete="off"
        />
        <Field
          label="Password"
          name="password"
          type="password"
          value={values.password ?? ""}
          onValue={set("password")}
          errors={failure.fields.password}
          autoComplete="new-password"
        />
        <Field
          label="Email"
          name="email"
          type="email"
          value={values.email ?? ""}
          onValue={set("email")}
          errors={failure.fields.email}
        />
        <Field
          label="First name"
          name="first_name"
          value={values.first_name ?? ""}
          onValue={set("first_name")}
          errors={failure.fields.first_name}
        />
        <Field
          label="Last name"
          name="last_name"
          value={values.last_name ?? ""}
          onValue={set("last_name")}
          errors={failure.fields.last_name}
        />
        {groups.length > 0 && (
          <SelectField
            label="Group"
            name="group"
            value={values.group ?? ""}
            onValue={set("group")}
            errors={failure.fields.group}
          >
            <option value="">No group</option>
            {groups.map((group) => (
              <option key={group} value={group}>
                {group}
              </option>
            ))}
          </SelectField>
        )}
      </div>
      <div class="form-actions">
        <SubmitButton busy={busy}>{busy ? "Creating user…" : "Create user"}</SubmitButton>
        <button type="button" class="button" onClick={() => onDone(null)}>
          Cancel
        </button>
      </div>
    </form>
  );
}
