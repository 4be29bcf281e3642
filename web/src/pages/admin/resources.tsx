import { useRef, useState } from "preact/hooks";
import { everyRow } from "../../api/every-row.ts";
import { api } from "../../api/instance.ts";
import type { Machine } from "../../api/types.ts";
import { access, allows } from "../../state/access.ts";
import { useQuery } from "../../state/query.ts";
import { useStore } from "../../state/store.ts";
import { unitOf } from "../../state/units.ts";
import { ConfirmButton } from "../../ui/confirm-button.tsx";
import { Empty, ErrorNotice, Loading } from "../../ui/feedback.tsx";
import {
  Field,
  FormError,
  type FormFailure,
  formFailure,
  returnFocus,
  SelectField,
  SubmitButton,
  useFocusOnRefusal,
  useOpenedForm,
  useSubmit,
} from "../../ui/form.tsx";

type Row = Record<string, unknown>;

interface FieldSpec {
  name: string;
  label: string;
  kind: "integer" | "number" | "text" | "machine";
  /** The client-chosen primary key: set when creating, fixed afterwards. */
  createOnly?: boolean;
  hint?: string;
}

interface Column {
  name: string;
  label: string;
  numeric?: boolean;
  /** Its unit: the same for every row (said in the heading), or the row's own (in the cell). */
  unit?: string | ((row: Row) => string);
}

export interface ResourceSpec {
  /** The resource in permission codes: `machine` for `machine.add`, `machine.change`… */
  resource: string;
  title: string;
  singular: string;
  path: string;
  idField: string;
  fields: FieldSpec[];
  columns: Column[];
  /** Rows belong to a machine: list them one machine at a time. */
  byMachine?: boolean;
}

export const machinesSpec: ResourceSpec = {
  resource: "machine",
  title: "Machines",
  singular: "machine",
  path: "/data/machines/",
  idField: "machine_id",
  fields: [
    {
      name: "machine_id",
      label: "Machine id",
      kind: "integer",
      createOnly: true,
      hint: "Chosen by you, e.g. the serial number",
    },
    { name: "machine_name", label: "Name", kind: "text" },
    {
      name: "tool_capacity",
      label: "Tool capacity",
      kind: "integer",
      hint: "Pockets in the tool magazine",
    },
  ],
  columns: [
    { name: "machine_id", label: "Id", numeric: true },
    { name: "machine_name", label: "Name" },
    { name: "tool_capacity", label: "Tool capacity", numeric: true },
  ],
};

export const axesSpec: ResourceSpec = {
  resource: "axis",
  title: "Axes",
  singular: "axis",
  path: "/data/axes/",
  idField: "axis_id",
  byMachine: true,
  fields: [
    { name: "machine", label: "Machine", kind: "machine" },
    { name: "axis_name", label: "Axis name", kind: "text", hint: "X, Y, Z, A, C…" },
    {
      name: "max_acceleration",
      label: "Max acceleration",
      kind: "number",
      hint: "mm/s² (linear) or °/s² (rotary)",
    },
    {
      name: "max_velocity",
      label: "Max velocity",
      kind: "number",
      hint: "mm/s (linear) or °/s (rotary)",
    },
  ],
  columns: [
    { name: "axis_id", label: "Id", numeric: true },
    { name: "axis_name", label: "Axis" },
    {
      name: "max_acceleration",
      label: "Max acceleration",
      numeric: true,
      unit: (row) => unitOf("acceleration", String(row.axis_name)),
    },
    {
      name: "max_velocity",
      label: "Max velocity",
      numeric: true,
      unit: (row) => unitOf("velocity", String(row.axis_name)),
    },
  ],
};

export const toolsSpec: ResourceSpec = {
  resource: "tool",
  title: "Tools",
  singular: "tool",
  path: "/data/tools/",
  idField: "tool_id",
  byMachine: true,
  fields: [
    { name: "machine", label: "Machine", kind: "machine" },
    { name: "tool_offset", label: "Tool offset", kind: "number", hint: "Length offset, mm" },
    { name: "feedrate", label: "Feed rate", kind: "number", hint: "mm/min" },
  ],
  columns: [
    { name: "tool_id", label: "Id", numeric: true },
    { name: "tool_offset", label: "Tool offset", numeric: true, unit: "mm" },
    { name: "feedrate", label: "Feed rate", numeric: true, unit: "mm/min" },
    { name: "update_timestamp", label: "Updated" },
  ],
};

/** Form text → JSON: numbers where they parse, the text otherwise, so the API says what is wrong. */
function toPayload(spec: ResourceSpec, values: Record<string, string>, creating: boolean): Row {
  const payload: Row = {};
  for (const field of spec.fields) {
    if (field.createOnly && !creating) continue;
    const text = values[field.name]?.trim() ?? "";
    if (field.kind === "text") payload[field.name] = values[field.name] ?? "";
    else if (text === "") payload[field.name] = null;
    else payload[field.name] = Number.isFinite(Number(text)) ? Number(text) : text;
  }
  return payload;
}

function display(value: unknown): string {
  if (typeof value === "string" && /^\d{4}-\d\d-\d\dT/.test(value))
    return new Date(value).toLocaleString();
  return value === null || value === undefined ? "—" : String(value);
}

export function ResourceAdmin({ spec }: { spec: ResourceSpec }) {
  const machines = useQuery(() => everyRow<Machine>(api, "/data/machines/"), [spec.path]);
  const [machine, setMachine] = useState<string>("");
  const selectedMachine = spec.byMachine
    ? machine || String(machines.data?.[0]?.machine_id ?? "")
    : "";
  const rows = useQuery(
    () =>
      spec.byMachine && !selectedMachine
        ? Promise.resolve<Row[]>([])
        : api.get<Row[]>(spec.path, {
            limit: 10_000,
            ...(spec.byMachine ? { machine: selectedMachine } : {}),
          }),
    [spec.path, selectedMachine],
  );
  const [editing, setEditing] = useState<Row | "new" | null>(null);
  // The Edit or New button that opened the form: focus goes back there when it closes.
  const opener = useRef<HTMLElement | null>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  const [message, setMessage] = useState<string | undefined>(undefined);
  const [failure, setFailure] = useState<Error | undefined>(undefined);
  // Only the actions the user's groups allow are offered, rather than refused after a try.
  const permissions = useStore(access);
  const may = (action: "add" | "change" | "delete") =>
    allows(permissions, `${spec.resource}.${action}`);
  const rowActions = may("change") || may("delete");

  const remove = async (row: Row) => {
    const id = row[spec.idField];
    try {
      await api.request("DELETE", `${spec.path}${id}/`);
      setMessage(`Deleted ${spec.singular} ${id}.`);
      setFailure(undefined);
      rows.reload();
      if (spec === machinesSpec) machines.reload();
    } catch (error) {
      setFailure(error as Error);
      setMessage(undefined);
    }
  };

  return (
    <section aria-labelledby="resource-title">
      <div class="page-head">
        <h2 id="resource-title" ref={heading} tabIndex={-1}>
          {spec.title}
        </h2>
        <div class="toolbar">
          {spec.byMachine && machines.data && (
            <label class="control">
              <span>Machine</span>
              <select
                value={selectedMachine}
                onChange={(event) => setMachine((event.currentTarget as HTMLSelectElement).value)}
              >
                {machines.data.map((item) => (
                  <option key={item.machine_id} value={item.machine_id}>
                    {item.machine_name} (#{item.machine_id})
                  </option>
                ))}
              </select>
            </label>
          )}
          {may("add") && (
            <button
              type="button"
              class="button button-primary"
              onClick={(event) => {
                opener.current = event.currentTarget;
                setEditing("new");
                setMessage(undefined);
                setFailure(undefined);
              }}
            >
              New {spec.singular}
            </button>
          )}
        </div>
      </div>
      {message && (
        <p class="notice notice-success" role="status">
          {message}
        </p>
      )}
      {failure && <ErrorNotice error={failure} action={`delete this ${spec.singular}`} />}
      {editing && (
        <ResourceForm
          key={editing === "new" ? "new" : String(editing[spec.idField])}
          spec={spec}
          row={editing === "new" ? null : editing}
          machines={machines.data ?? []}
          defaultMachine={selectedMachine}
          onDone={(saved) => {
            setEditing(null);
            returnFocus(opener.current, heading.current);
            if (saved) {
              setFailure(undefined);
              setMessage(`Saved ${spec.singular} ${saved[spec.idField]}.`);
              rows.reload();
              if (spec === machinesSpec) machines.reload();
            }
          }}
        />
      )}
      {rows.error && <ErrorNotice error={rows.error} action={`see ${spec.title.toLowerCase()}`} />}
      {!rows.data && !rows.error && <Loading what={spec.title.toLowerCase()} />}
      {rows.data && rows.data.length === 0 && (
        <Empty>
          {spec.byMachine && !selectedMachine
            ? "Add a machine first."
            : `No ${spec.title.toLowerCase()} yet.`}
        </Empty>
      )}
      {rows.data && rows.data.length > 0 && (
        <div class="panel table-scroll">
          <table class="table" aria-label={spec.title}>
            <thead>
              <tr>
                {spec.columns.map((column) => (
                  <th key={column.name} scope="col" class={column.numeric ? "num" : undefined}>
                    {column.label}
                    {typeof column.unit === "string" && (
                      <span class="unit-heading"> ({column.unit})</span>
                    )}
                  </th>
                ))}
                {rowActions && (
                  <th scope="col" class="actions">
                    <span class="visually-hidden">Actions</span>
                  </th>
                )}
              </tr>
            </thead>
            <tbody>
              {rows.data.map((row) => (
                <tr key={String(row[spec.idField])}>
                  {spec.columns.map((column) => (
                    <td key={column.name} class={column.numeric ? "num" : undefined}>
                      {display(row[column.name])}
                      {typeof column.unit === "function" && (
                        <>
                          {" "}
                          <span class="unit">{column.unit(row)}</span>
                        </>
                      )}
                    </td>
                  ))}
                  {rowActions && (
                    <td class="actions">
                      {may("change") && (
                        <button
                          type="button"
                          class="button button-small"
                          onClick={(event) => {
                            opener.current = event.currentTarget;
                            setEditing(row);
                            setMessage(undefined);
                            setFailure(undefined);
                          }}
                        >
                          Edit
                        </button>
                      )}{" "}
                      {may("delete") && (
                        <ConfirmButton
                          label="Delete"
                          question={
                            spec === machinesSpec
                              ? `Delete ${display(row.machine_name)} with its axes, tools and data?`
                              : `Delete ${spec.singular} ${display(row[spec.idField])}?`
                          }
                          onConfirm={() => remove(row)}
                        />
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function ResourceForm({
  spec,
  row,
  machines,
  defaultMachine,
  onDone,
}: {
  spec: ResourceSpec;
  row: Row | null;
  machines: Machine[];
  defaultMachine: string;
  onDone: (saved: Row | null) => void;
}) {
  const creating = row === null;
  const [values, setValues] = useState<Record<string, string>>(() =>
    Object.fromEntries(
      spec.fields.map((field) => [
        field.name,
        row ? String(row[field.name] ?? "") : field.kind === "machine" ? defaultMachine : "",
      ]),
    ),
  );
  const [failure, setFailure] = useState<FormFailure>({ fields: {}, general: undefined });
  const set = (name: string) => (value: string) => setValues((old) => ({ ...old, [name]: value }));
  const form = useRef<HTMLFormElement>(null);
  useOpenedForm(form);
  useFocusOnRefusal(form, failure);

  const { busy, submit } = useSubmit(async () => {
    try {
      const payload = toPayload(spec, values, creating);
      const saved = creating
        ? await api.request<Row>("POST", spec.path, { body: payload })
        : await api.request<Row>("PATCH", `${spec.path}${row[spec.idField]}/`, { body: payload });
      onDone(saved);
    } catch (error) {
      setFailure(
        formFailure(
          error,
          spec.fields.map((field) => field.name),
        ),
      );
    }
  });

  const title = creating ? `New ${spec.singular}` : `Edit ${spec.singular} ${row[spec.idField]}`;
  return (
    <form ref={form} class="panel form" onSubmit={submit} aria-label={title} noValidate>
      <h3>{title}</h3>
      <FormError message={failure.general} />
      <div class="form-grid">
        {spec.fields.map((field) =>
          field.kind === "machine" ? (
            <SelectField
              key={field.name}
              label={field.label}
              name={field.name}
              value={values[field.name] ?? ""}
              onValue={set(field.name)}
              errors={failure.fields[field.name]}
            >
              {machines.map((machine) => (
                <option key={machine.machine_id} value={machine.machine_id}>
                  {machine.machine_name} (#{machine.machine_id})
                </option>
              ))}
            </SelectField>
          ) : (
            <Field
              key={field.name}
              label={field.label}
              name={field.name}
              value={values[field.name] ?? ""}
              onValue={set(field.name)}
              errors={failure.fields[field.name]}
              hint={field.hint}
              inputMode={
                field.kind === "text" ? undefined : field.kind === "integer" ? "numeric" : "decimal"
              }
              disabled={field.createOnly && !creating}
            />
          ),
        )}
      </div>
      <div class="form-actions">
        <SubmitButton busy={busy}>
          {busy ? "Saving…" : creating ? `Create ${spec.singular}` : "Save changes"}
        </SubmitButton>
        <button type="button" class="button" onClick={() => onDone(null)}>
          Cancel
        </button>
      </div>
    </form>
  );
}
