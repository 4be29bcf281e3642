import type { ComponentChildren, RefObject } from "preact";
import { useEffect, useId, useRef, useState } from "preact/hooks";
import { ApiError } from "../api/client.ts";

interface InputProps {
  label: string;
  name: string;
  value: string;
  onValue: (value: string) => void;
  errors?: string[] | undefined;
  hint?: string | undefined;
  type?: "text" | "password" | "email" | "search";
  autoComplete?: string;
  inputMode?: "numeric" | "decimal" | undefined;
  required?: boolean;
  autoFocus?: boolean;
  disabled?: boolean | undefined;
}

/** A labelled input with the API's reasons for this field beneath it. */
export function Field({ label, name, value, onValue, errors, hint, type, ...rest }: InputProps) {
  const id = useId();
  const errorId = `${id}-error`;
  const hintId = `${id}-hint`;
  const described = [errors?.length ? errorId : "", hint ? hintId : ""].filter(Boolean).join(" ");
  return (
    <div class={`field${errors?.length ? " field-invalid" : ""}`}>
      <label for={id}>{label}</label>
      <input
        id={id}
        // Preact types each input type apart; any of ours takes the same attributes as text.
        type={(type ?? "text") as "text"}
        name={name}
        value={value}
        onInput={(event) => onValue((event.currentTarget as HTMLInputElement).value)}
        aria-invalid={errors?.length ? true : undefined}
        aria-describedby={described || undefined}
        {...rest}
      />
      {hint && (
        <small id={hintId} class="field-hint">
          {hint}
        </small>
      )}
      {errors?.length ? (
        <p id={errorId} class="field-error" data-field-error={name}>
          {errors.join(" ")}
        </p>
      ) : null}
    </div>
  );
}

export function SelectField({
  label,
  name,
  value,
  onValue,
  errors,
  children,
}: {
  label: string;
  name: string;
  value: string;
  onValue: (value: string) => void;
  errors?: string[] | undefined;
  children: ComponentChildren;
}) {
  const id = useId();
  return (
    <div class={`field${errors?.length ? " field-invalid" : ""}`}>
      <label for={id}>{label}</label>
      <select
        id={id}
        name={name}
        value={value}
        onChange={(event) => onValue((event.currentTarget as HTMLSelectElement).value)}
        aria-invalid={errors?.length ? true : undefined}
        aria-describedby={errors?.length ? `${id}-error` : undefined}
      >
        {children}
      </select>
      {errors?.length ? (
        <p id={`${id}-error`} class="field-error" data-field-error={name}>
          {errors.join(" ")}
        </p>
      ) : null}
    </div>
  );
}

/** Errors of a failed submit: by field where the form has that field, the rest on top. */
export interface FormFailure {
  fields: Record<string, string[]>;
  general: string | undefined;
}

export function formFailure(error: unknown, formFields: readonly string[]): FormFailure {
  if (!(error instanceof ApiError)) return { fields: {}, general: (error as Error).message };
  if (error.status === 403) {
    return { fields: {}, general: "Your groups do not allow this change." };
  }
  const fields: Record<string, string[]> = {};
  const other: string[] = [];
  for (const [name, reasons] of Object.entries(error.fields)) {
    if (formFields.includes(name)) fields[name] = reasons;
    else if (name === "detail" || name === "non_field_errors") other.push(...reasons);
    else other.push(`${name}: ${reasons.join(" ")}`);
  }
  const general = other.length
    ? other.join(" ")
    : Object.keys(fields).length === 0
      ? error.message
      : "Please correct the fields marked below.";
  return { fields, general };
}

export function FormError({ message }: { message: string | undefined }) {
  if (!message) return null;
  return (
    <p class="notice notice-error form-error" role="alert">
      {message}
    </p>
  );
}

/**
 * A form opened by a button elsewhere on the page (Edit on a row far below it) is brought into
 * view and takes the focus in its first field it lets the user change; without that, on a phone
 * nothing seemed to happen.
 */
export function useOpenedForm(form: RefObject<HTMLFormElement | null>): void {
  useEffect(() => {
    const element = form.current;
    if (!element) return;
    element.scrollIntoView({ block: "start" });
    element
      .querySelector<HTMLElement>("input:not([disabled]), select:not([disabled]), textarea")
      ?.focus({ preventScroll: true });
  }, [form]);
}

/** Focus back where the user was: the control that opened a form, if it is still on the page. */
export function returnFocus(opener: HTMLElement | null | undefined, fallback?: HTMLElement | null) {
  // After the render that removes the form (and may re-render the rows).
  requestAnimationFrame(() => {
    if (opener?.isConnected) opener.focus();
    else fallback?.focus();
  });
}

/**
 * A form's submit while its request is out: `busy` says so, and a second Enter or click is
 * ignored rather than sent again. `work` reports its own outcome (a failure, a message).
 */
export function useSubmit(work: () => Promise<void>): {
  busy: boolean;
  submit: (event: Event) => void;
} {
  const [busy, setBusy] = useState(false);
  // The state lags a render behind; two presses within one would both find it false.
  const running = useRef(false);
  const submit = (event: Event) => {
    event.preventDefault();
    if (running.current) return;
    running.current = true;
    setBusy(true);
    void work().finally(() => {
      running.current = false;
      setBusy(false);
    });
  };
  return { busy, submit };
}

/**
 * A refused submit takes the focus to the first field to correct, whose reason is read with it.
 * A refusal of no field in particular leaves it on the submit button, its message an alert.
 */
export function useFocusOnRefusal(
  form: RefObject<HTMLFormElement | null>,
  failure: FormFailure,
): void {
  useEffect(() => {
    form.current?.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus();
  }, [failure, form]);
}

/**
 * Not disabled while busy, only said to be: a disabled button loses the focus to the page's top,
 * where a keyboard or screen-reader user who pressed it would find themselves. (`useSubmit`
 * ignores the presses meanwhile.)
 */
export function SubmitButton({
  busy,
  class: className = "button button-primary",
  children,
}: {
  busy: boolean;
  class?: string;
  children: ComponentChildren;
}) {
  return (
    <button
      type="submit"
      class={className}
      aria-disabled={busy || undefined}
      aria-busy={busy || undefined}
    >
      {children}
    </button>
  );
}
