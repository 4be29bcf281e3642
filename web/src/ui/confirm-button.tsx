import { useEffect, useRef, useState } from "preact/hooks";

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
  const cancel = useRef<HTMLButtonElement>(null);
  const opener = useRef<HTMLButtonElement>(null);
  // Set when the question is withdrawn (Cancel, Escape): focus goes back to the button that
  // asked it, which is rendered again, instead of to the page's start with the question gone.
  const refocus = useRef(false);
  // Focus moves to the question just asked, on Cancel: the button pressed is gone, and a second
  // Enter (a double press, a key held) then undoes the question instead of destroying a
  // machine and its data. (The autofocus attribute acts only once per page, so it is set here.)
  useEffect(() => {
    if (asking) cancel.current?.focus();
    else if (refocus.current) opener.current?.focus();
    refocus.current = false;
  }, [asking]);
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
    <span class="confirm">
      <span class="confirm-question">{question}</span>
      <button
        type="button"
        class="button button-small button-danger"
        disabled={busy}
        onKeyDown={cancelOnEscape}
        onClick={async () => {
          setBusy(true);
          try {
            await onConfirm();
          } finally {
            setBusy(false);
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
