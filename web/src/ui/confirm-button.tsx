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
  // Focus moves to the question just asked, on Cancel: the button pressed is gone, and a second
  // Enter (a double press, a key held) then undoes the question instead of destroying a
  // machine and its data. (The autofocus attribute acts only once per page, so it is set here.)
  useEffect(() => {
    if (asking) cancel.current?.focus();
  }, [asking]);
  if (!asking) {
    return (
      <button
        type="button"
        class="button button-small button-danger-quiet"
        onClick={() => setAsking(true)}
      >
        {label}
      </button>
    );
  }
  const cancelOnEscape = (event: KeyboardEvent) => {
    if (event.key === "Escape") setAsking(false);
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
        onClick={() => setAsking(false)}
      >
        Cancel
      </button>
    </span>
  );
}
