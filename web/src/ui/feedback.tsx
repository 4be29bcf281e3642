import { ApiError, NetworkError } from "../api/client.ts";

/** An API failure, said plainly: no permission, not found, refused and why, or unreachable. */
export function ErrorNotice({ error, action }: { error: Error; action?: string }) {
  let title = "Something went wrong";
  let text = error.message;
  if (error instanceof ApiError && error.status === 403) {
    title = "Not allowed";
    text = `Your groups do not allow you to ${action ?? "see this"}. An Admin can change that.`;
  } else if (error instanceof ApiError && error.status === 404) {
    title = "Not found";
    text = "It may have been deleted.";
  } else if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
    // Refused for a reason (the last Admin, a rule of the data): the reason is the message.
    title = action ? `Could not ${action}` : "Not done";
  } else if (error instanceof NetworkError) {
    title = "Spindle cannot be reached";
    text = "Check the network; this page retries on its own.";
  }
  return (
    <div class="notice notice-error" role="alert">
      <strong>{title}</strong>
      <span>{text}</span>
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="loading" aria-live="polite">
      <span class="spinner" aria-hidden="true" /> Loading {what}…
    </p>
  );
}

export function Empty({ children }: { children: preact.ComponentChildren }) {
  return <div class="empty">{children}</div>;
}
