import { useState } from "preact/hooks";

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
  return (
    <span class="confirm">
      <span class="confirm-question">{question}</span>
      <button
        type="button"
        class="button button-small button-danger"
        disabled={busy}
        // biome-ignore lint/a11y/noAutofocus: focus moves to the question just asked
        autoFocus
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
      <button type="button" class="button button-small" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}
