import type { AnchorHTMLAttributes, ComponentChildren } from "preact";
import { Store, useStore } from "./state/store.ts";

/** The console's location: a plain History API router, no dependency. */
export const location = new Store(`${window.location.pathname}${window.location.search}`);

window.addEventListener("popstate", () => {
  location.set(`${window.location.pathname}${window.location.search}`);
});

/**
 * Goes to `to`. `replace` rewrites the current entry instead of adding one; `keepScroll` is for a
 * page writing its own state into the address, which must not jump to the top.
 */
export function navigate(to: string, { replace = false, keepScroll = false } = {}): void {
  if (to === location.get()) return;
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  location.set(to);
  if (!keepScroll) window.scrollTo(0, 0);
}

export function usePath(): string {
  return useStore(location).split("?")[0] ?? "/";
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
