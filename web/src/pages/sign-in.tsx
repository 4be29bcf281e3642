import { useState } from "preact/hooks";
import { ApiError, NetworkError } from "../api/client.ts";
import { api } from "../api/instance.ts";
import { useStore } from "../state/store.ts";
import { Field, FormError, SubmitButton, useSubmit } from "../ui/form.tsx";
import { usePageTitle } from "../ui/page-title.ts";

export function SignInPage() {
  usePageTitle("Sign in");
  const { notice } = useStore(api.session);
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | undefined>(undefined);

  // A refusal names no field: the focus stays on Sign in, the reason read as an alert.
  const { busy, submit } = useSubmit(async () => {
    setError(undefined);
    // "Your session has ended" beside "Wrong username or password" would read as two problems.
    api.clearNotice();
    try {
      await api.signIn(username.trim(), password);
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 400) {
        setError("Wrong username or password.");
      } else if (failure instanceof ApiError && failure.status === 429) {
        setError("Too many attempts. Wait a few minutes, then try again.");
      } else if (failure instanceof ApiError && failure.status === 401) {
        setError("The console's sign-in client is not registered on this server. Restart Spindle.");
      } else if (failure instanceof NetworkError) {
        setError("Spindle cannot be reached. Check that the server is running.");
      } else {
        setError((failure as Error).message);
      }
    }
  });

  return (
    <main class="signin">
      <form class="signin-card" onSubmit={submit} aria-labelledby="signin-title">
        <div class="brand brand-large" aria-hidden="true">
          <span class="brand-mark" />
          Spindle
        </div>
        <h1 id="signin-title">Sign in</h1>
        <p class="muted">Machine data for your CNC fleet.</p>
        {notice && (
          <p class="notice notice-info" role="status">
            {notice}
          </p>
        )}
        <FormError message={error} />
        <Field
          label="Username"
          name="username"
          value={username}
          onValue={setUsername}
          autoComplete="username"
          required
          autoFocus
        />
        <Field
          label="Password"
          name="password"
          type="password"
          value={password}
          onValue={setPassword}
          autoComplete="current-password"
          required
        />
        <SubmitButton busy={busy} class="button button-primary button-wide">
          {busy ? "Signing in…" : "Sign in"}
        </SubmitButton>
      </form>
    </main>
  );
}
