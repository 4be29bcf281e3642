import type { AnchorHTMLAttributes, ComponentChildren } from "preact";
import { useEffect } from "preact/hooks";
import { Store, useStore } from "./state/store.ts";

const address = () => `${window.location.pathname}${window.location.search}`;
const pathOf = (to: string) => to.split("?")[0] ?? "/";

/** The console's location: a plain History API router, no dependency. */
export const location = new Store(address());

/** What each page holding unsaved work asks before it is left; the first one asks. */
const leaveQuestions = new Set<{ question: string }>();

/**
 * Asks before leaving a page with unsaved work (for signing out too): true when there is none,
 * or the user chooses to leave it.
 */
export function confirmLeaving(): boolean {
  const [first] = leaveQuestions;
  return !first || window.confirm(first.question);
}

window.addEventListener("popstate", () => {
  const to = address();
  if (pathOf(to) !== pathOf(location.get()) && !confirmLeaving()) {
    // The browser has gone back (or forward) already: return to the page and its work.
    history.pushState(null, "", location.get());
    return;
  }
  location.set(to);
});

/**
 * While `unsaved`, leaving the page asks `question` first: through the console's links and the
 * browser's back and forward, and (in the browser's own words) closing or reloading the tab.
 */
export function useLeaveGuard(unsaved: boolean, question: string): void {
  useEffect(() => {
    if (!unsaved) return;
    const guard = { question };
    leaveQuestions.add(guard);
    const onBeforeUnload = (event: BeforeUnloadEvent) => event.preventDefault();
    window.addEventListener("beforeunload", onBeforeUnload);
    return () => {
      leaveQuestions.delete(guard);
      window.removeEventListener("beforeunload", onBeforeUnload);
    };
  }, [unsaved, question]);
}

/**
 * Goes to `to`. `replace` rewrites the current entry instead of adding one; `keepScroll` is for a
 * page writing its own state into the address, which must not jump to the top. Going to another
 * page asks first if this one holds unsaved work, and stays if the user says so.
 */
export function navigate(to: string, { replace = false, keepScroll = false } = {}): void {
  if (to === location.get()) return;
  if (pathOf(to) !== pathOf(location.get()) && !confirmLeaving()) return;
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  location.set(to);
  if (!keepScroll) window.scrollTo(0, 0);
}

export function usePath(): string {
  return pathOf(useStore(location));
}

export function useSearchParams(): URLSearchParams {
  return new URLSearchParams(useStore(location).split("?")[1] ?? "");
}

type LinkProps = AnchorHTMLAttributes<HTMLAnchorElement> & {
  href: string;
  children?: ComponentChildren;
};

/** An ordinary link (middle-click and copy work) that navigates in place on a plain click. */
export function Link({ href, children, ...rest }: LinkProps) {
  const onClick = (event: MouseEvent) => {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(href);
  };
  const current = usePath();
  const active = current === href || (href !== "/" && current.startsWith(`${href}/`));
  return (
    <a href={href} onClick={onClick} aria-current={active ? "page" : undefined} {...rest}>
      {children}
    </a>
  );
}
