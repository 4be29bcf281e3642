import { useRef, useState } from "preact/hooks";
import { ApiError } from "../api/client.ts";
import { api } from "../api/instance.ts";
import type { Me } from "../api/types.ts";
import { useQuery } from "../state/query.ts";
import { ErrorNotice, Loading } from "../ui/feedback.tsx";
import {
  Field,
  FormError,
  type FormFailure,
  formFailure,
  SubmitButton,
  useFocusOnRefusal,
  useSubmit,
} from "../ui/form.tsx";
import { usePageTitle } from "../ui/page-title.ts";

/** The signed-in person's own page: who Spindle knows them as, and their password. */
export function AccountPage() {
  usePageTitle("Account");
  // Every signed-in user may read this, whatever their groups (even none).
  const me = useQuery(() => api.get<Me>("/users/me/"), []);
  return (
    <section aria-labelledby="account-title">
      <div class="page-head">
        <div>
          <h1 id="account-title">Account</h1>
          <p class="muted">Who you are signed in as, and your password.</p>
        </div>
      </div>
      <div class="account">
        {me.error && !me.data ? (
          <ErrorNotice error={me.error} action="see your account" />
        ) : !me.data ? (
          <Loading what="your account" />
        ) : (
          <AccountDetails me={me.data} />
        )}
        <PasswordForm username={me.data?.username ?? api.username ?? ""} />
      </div>
    </section>
  );
}

function AccountDetails({ me }: { me: Me }) {
  const name = `${me.first_name} ${me.last_name}`.trim();
  const none = (what: string) => <span class="muted">{what}</span>;
  return (
    <section class="panel account-panel" aria-labelledby="account-details-title">
      <h2 id="account-details-title">Your account</h2>
      <dl class="details">
        <dt>Username</dt>
        <dd>{me.username}</dd>
        <dt>Name</dt>
        <dd>{name || none("not given")}</dd>
        <dt>Email</dt>
        <dd>{me.email || none("not given")}</dd>
        <dt>Groups</dt>
        <dd>{me.groups.length ? me.groups.join(", ") : none("none")}</dd>
      </dl>
    </section>
  );
}

const passwordFields = ["old_password", "new_password", "new_password_again"] as const;
type PasswordValues = Record<(typeof passwordFields)[number], string>;
const blank: PasswordValues = { old_password: "", new_password: "", new_password_again: "" };
const noFailure: FormFailure = { fields: {}, general: undefined };

function PasswordForm({ username }: { username: string }) {
  const [values, setValues] = useState<PasswordValues>(blank);
  const [failure, setFailure] = useState<FormFailure>(noFailure);
  const [message, setMessage] = useState<string | undefined>(undefined);
  const form = useRef<HTMLFormElement>(null);
  const set = (name: keyof PasswordValues) => (value: string) =>
    setValues((old) => ({ ...old, [name]: value }));
  useFocusOnRefusal(form, failure);

  const { busy, submit } = useSubmit(async () => {
    setMessage(undefined);
    // Caught here, not sent: the server only ever sees one new password.
    if (values.new_password !== values.new_password_again) {
      setFailure({
        fields: {
          new_password_again: ["The two new passwords do not match. Type the same one twice."],
        },
        general: undefined,
      });
      return;
    }
    try {
      const answer = await api.request<{ message: string }>("POST", "/users/me/password/", {
        body: { old_password: values.old_password, new_password: values.new_password },
      });
      setValues(blank);
      setFailure(noFailure);
      setMessage(answer.message);
    } catch (error) {
      // formFailure reads a 403 as the groups' doing; here it is the session's token.
      setFailure(
        error instanceof ApiError && error.status === 403
          ? {
              fields: {},
              general: "This session may not change your password. Sign out, sign in, try again.",
            }
          : formFailure(error, passwordFields),
      );
    }
  });

  return (
    <form
      ref={form}
      class="panel form account-panel"
      onSubmit={submit}
      aria-labelledby="password-title"
      noValidate
    >
      <h2 id="password-title">Change password</h2>
      <p class="muted small">
        Changing it signs you out everywhere else, in other browsers and apps; you stay signed in
        here.
      </p>
      {message && (
        <p class="notice notice-success" role="status">
          {message}
        </p>
      )}
      <FormError message={failure.general} />
      {/* For password managers: the account whose saved password this form changes. */}
      <input type="text" name="username" autoComplete="username" value={username} readOnly hidden />
      <Field
        label="Current password"
        name="old_password"
        type="password"
        value={values.old_password}
        onValue={set("old_password")}
        errors={failure.fields.old_password}
        autoComplete="current-password"
      />
      <Field
        label="New password"
        name="new_password"
        type="password"
        value={values.new_password}
        onValue={set("new_password")}
        errors={failure.fields.new_password}
        hint="At least 8 characters; not only digits, not a common password, not holding your username."
        autoComplete="new-password"
      />
      <Field
        label="New password again"
        name="new_password_again"
        type="password"
        value={values.new_password_again}
        onValue={set("new_password_again")}
        errors={failure.fields.new_password_again}
        autoComplete="new-password"
      />
      <div class="form-actions">
        <SubmitButton busy={busy}>{busy ? "Changing password…" : "Change password"}</SubmitButton>
      </div>
    </form>
  );
}
