import { useEffect } from "preact/hooks";
import { api } from "./api/instance.ts";
import { AccountPage } from "./pages/account.tsx";
import { AdminPage, openSections } from "./pages/admin/admin.tsx";
import { FleetPage } from "./pages/fleet.tsx";
import { HistoryPage } from "./pages/history.tsx";
import { MachinePage } from "./pages/machine.tsx";
import { SignInPage } from "./pages/sign-in.tsx";
import { confirmLeaving, Link, navigate, usePath } from "./router.tsx";
import { access } from "./state/access.ts";
import { liveSource } from "./state/sources.ts";
import { useStore } from "./state/store.ts";
import { usePageTitle } from "./ui/page-title.ts";

function Page({ path }: { path: string }) {
  const machine = /^\/machines\/(\d+)\/?$/.exec(path);
  if (machine) return <MachinePage key={machine[1]} id={Number(machine[1])} />;
  const admin = /^\/admin(?:\/([^/]*))?\/?$/.exec(path);
  if (admin) return <AdminPage section={admin[1] ?? ""} />;
  if (path === "/history" || path.startsWith("/history/")) return <HistoryPage />;
  if (path === "/account" || path === "/account/") return <AccountPage />;
  if (path === "/" || path === "/machines" || path === "/machines/") return <FleetPage />;
  return <NotFound path={path} />;
}

function NotFound({ path }: { path: string }) {
  usePageTitle("Page not found");
  return (
    <div class="empty">
      <h1>Page not found</h1>
      <p>
        Nothing lives at <code>{path}</code>. Go back to the <Link href="/">fleet</Link>.
      </p>
    </div>
  );
}

function ConnectionBanner() {
  const online = useStore(api.online);
  const live = useStore(liveSource.status);
  if (online && live !== "reconnecting") return null;
  return (
    <div class="banner" role="alert">
      <span class="spinner" aria-hidden="true" /> Connection to Spindle lost. Reconnecting…
    </div>
  );
}

export function App() {
  const { tokens } = useStore(api.session);
  const permissions = useStore(access);
  const path = usePath();

  // Signing in lands where the person was going; /signin itself is only a place to sign in.
  useEffect(() => {
    if (tokens && path === "/signin") navigate("/", { replace: true });
  }, [tokens, path]);

  if (!tokens) {
    return (
      <>
        <ConnectionBanner />
        <SignInPage />
      </>
    );
  }
  return (
    <>
      <a class="skip-link" href="#main">
        Skip to content
      </a>
      <header class="topbar">
        <Link href="/" class="brand" aria-label="Spindle, fleet overview">
          <span class="brand-mark" aria-hidden="true" />
          Spindle
        </Link>
        <nav class="mainnav" aria-label="Main">
          <Link href="/">Fleet</Link>
          <Link href="/history">History</Link>
          {openSections(permissions).length > 0 && <Link href="/admin">Administration</Link>}
        </nav>
        <div class="user">
          {/* Where people look for their own account: their name, as on most sites. */}
          <Link href="/account" class="user-account" title="Your account">
            <span class="user-name">
              {permissions.status === "known" ? permissions.me.username : tokens.username}
            </span>
            <span class="visually-hidden"> (your account)</span>
          </Link>
          <button
            type="button"
            class="button button-small button-ghost"
            onClick={() => {
              if (confirmLeaving()) void api.signOut();
            }}
          >
            Sign out
          </button>
        </div>
      </header>
      <ConnectionBanner />
      <main id="main" tabIndex={-1}>
        <Page path={path} />
      </main>
    </>
  );
}
