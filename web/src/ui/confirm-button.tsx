import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

/**
 * Where the focus goes when the row holding a focused ConfirmButton is taken off the page (its
 * delete went through): the heading of the list's section, which stays however many rows are
 * left, even none, where a next row's Delete or the table itself may not exist.
 */
function listHeading(element: Element): HTMLElement | null {
  const labelledBy = element.closest("section[aria-labelledby]")?.getAttribute("aria-labelledby");
  const heading = labelledBy ? document.getElementById(labelledBy) : null;
  // Focusable from script only, so Tab does not stop on it.
  if (heading && !heading.hasAttribute("tabindex")) heading.tabIndex = -1;
  return heading;
}

/** A destructive action that asks once, in place (keyboard friendly, no browser dialog). */
export function ConfirmButton({
  label,
  question,
  onConfirm,
}: {
  label: string;
  question: string;
  onConfirm: () => Promise<void> | void;
}) {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  // The state lags a render behind; two presses within one would both find it false.
  const running = useRef(false);
  const cancel = useRef<HTMLButtonElement>(null);
  const opener = useRef<HTMLButtonElement>(null);
  const asked = useRef<HTMLSpanElement>(null);
  // Set when the question is withdrawn (Cancel, Escape) or answered: focus goes back to the
  // button that asked it, which is rendered again, instead of to the page's start with the
  // question gone.
  const refocus = useRef(false);
  // Focus moves to the question just asked, on Cancel: the button pressed is gone, and a second
  // Enter (a double press, a key held) then undoes the question instead of destroying a
  // machine and its data. (The autofocus attribute acts only once per page, so it is set here.)
  useEffect(() => {
    if (asking) cancel.current?.focus();
    else if (refocus.current) opener.current?.focus();
    refocus.current = false;
  }, [asking]);
  // Taken off the page with the focus (its row deleted): the focus would fall to the page's top.
  // A layout effect's cleanup runs before the elements are removed, so the focus is still found
  // in them (a passive one's runs after paint, with the focus already on the page's top).
  useLayoutEffect(
    () => () => {
      const active = document.activeElement;
      const own = [opener.current, asked.current].find((element) => element?.contains(active));
      if (!own) return;
      const heading = listHeading(own);
      // After the render that removes the row.
      requestAnimationFrame(() => {
        const now = document.activeElement;
        if ((!now || now === document.body || !now.isConnected) && heading?.isConnected)
          heading.focus();
      });
    },
    [],
  );
  const withdraw = () => {
    refocus.current = true;
    setAsking(false);
  };
  if (!asking) {
    return (
      <button
        type="button"
        class="button button-small button-danger-quiet"
        ref={opener}
        onClick={() => setAsking(true)}
      >
        {label}
      </button>
    );
  }
  const cancelOnEscape = (event: KeyboardEvent) => {
    if (event.key === "Escape") withdraw();
  };
  return (
    <span class="confirm" ref={asked}>
      <span class="confirm-question">{question}</span>
      {/* Said to be disabled while busy, not disabled: a disabled button drops the focus of
          whoever pressed it to the page's top. A second press meanwhile is ignored. */}
      <button
        type="button"
        class="button button-small button-danger"
        aria-disabled={busy || undefined}
        aria-busy={busy || undefined}
        onKeyDown={cancelOnEscape}
        onClick={async () => {
          if (running.current) return;
          running.current = true;
          setBusy(true);
          try {
            await onConfirm();
          } finally {
            running.current = false;
            setBusy(false);
            // Back on Delete if the focus was still here; if the row then goes, the unmount
            // above takes it on to the list's heading.
            const active = document.activeElement;
            refocus.current =
              !active || active === document.body || asked.current?.contains(active) === true;
            setAsking(false);
          }
        }}
      >
        Yes, {label.toLowerCase()}
      </button>
      <button
        type="button"
        class="button button-small"
        ref={cancel}
        onKeyDown={cancelOnEscape}
        onClick={withdraw}
      >
        Cancel
      </button>
    </span>
  );
}
