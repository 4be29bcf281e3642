import { useRef, useState } from "preact/hooks";
import { clientId as consoleClientId } from "../../api/client.ts";
import { api } from "../../api/instance.ts";
import type { OAuthClient } from "../../api/types.ts";
import { access, allows } from "../../state/access.ts";
import { useQuery } from "../../state/query.ts";
import { useStore } from "../../state/store.ts";
import { ConfirmButton } from "../../ui/confirm-button.tsx";
import { ErrorNotice, Loading } from "../../ui/feedback.tsx";
import { Field, FormError, type FormFailure, formFailure } from "../../ui/form.tsx";

const grants = ["password", "refresh_token", "client_credentials"];
const scopes = ["read", "write", "groups", "ingest"];

export function ClientsAdmin() {
  const permissions = useStore(access);
  const clients = useQuery(() => api.get<OAuthClient[]>("/o/clients/"), []);
  const [creating, setCreating] = useState(false);
  // Each new confidential client's secret, shown once: kept until the person dismisses it,
  // whatever else they do meanwhile (create or delete other clients).
  const [secrets, setSecrets] = useState<{ client: string; secret: string }[]>([]);
  const [message, setMessage] = useState<string | undefined>(undefined);
  const [failure, setFailure] = useState<Error | undefined>(undefined);

  if (clients.error && !clients.data)
    return <ErrorNotice error={clients.error} action="manage OAuth2 clients" />;
  if (!clients.data) return <Loading what="clients" />;

  return (
    <section aria-labelledby="clients-title">
      <div class="page-head">
        <div>
          <h2 id="clients-title" tabIndex={-1}>
            OAuth2 clients
          </h2>
          <p class="muted">Programs that obtain tokens: machine adapters, scripts, this console.</p>
        </div>
        {allows(permissions, "oauthclient.add") && (
          <button
            type="button"
            class="button button-primary"
            onClick={() => {
              // What the last action said is not about the form now opened (secrets stay).
              setMessage(undefined);
              setFailure(undefined);
              setCreating(true);
            }}
          >
            New client
          </button>
        )}
      </div>
      {secrets.map((shown) => (
        <SecretNotice
          key={shown.client}
          client={shown.client}
          secret={shown.secret}
          onDismiss={() => setSecrets((all) => all.filter((other) => other !== shown))}
        />
      ))}
      {message && (
        <p class="notice notice-success" role="status">
          {message}
        </p>
      )}
      {failure && <ErrorNotice error={failure} action="change OAuth2 clients" />}
      {creating && (
        <NewClientForm
          onDone={(created) => {
            setCreating(false);
            if (created) {
              const { client_id: client, secret } = created;
              if (secret) {
                setSecrets((all) => [
                  ...all.filter((other) => other.client !== client),
                  { client, secret },
                ]);
              }
              setFailure(undefined);
              setMessage(
                created.secret ? undefined : `Created public client ${created.client_id}.`,
              );
              clients.reload();
            }
          }}
        />
      )}
      <div class="panel table-scroll">
        <table class="table" aria-label="OAuth2 clients">
          <thead>
            <tr>
              <th scope="col">Client id</th>
              <th scope="col">Name</th>
              <th scope="col">Type</th>
              <th scope="col">Grants</th>
              <th scope="col">Scopes</th>
              <th scope="col">Created</th>
              <th scope="col" class="actions">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {clients.data.map((client) => (
              <tr key={client.client_id}>
                <th scope="row">
                  <code>{client.client_id}</code>
                </th>
                <td>{client.name || "—"}</td>
                <td>{client.public ? "Public" : "Confidential"}</td>
                <td>{client.grant_types.join(", ")}</td>
                <td>{client.scopes.join(" ")}</td>
                <td class="muted">{new Date(client.created_at).toLocaleDateString()}</td>
                <td class="actions">
                  {client.client_id !== consoleClientId &&
                    allows(permissions, "oauthclient.delete") && (
                      <ConfirmButton
                        label="Delete"
                        question={`Delete ${client.client_id} and its tokens?`}
                        onConfirm={async () => {
                          try {
                            await api.request(
                              "DELETE",
                              `/o/clients/${encodeURIComponent(client.client_id)}/`,
                            );
                            setMessage(`Deleted client ${client.client_id}.`);
                            setFailure(undefined);
                            // Only its own secret goes with it: it opens nothing any more.
                            setSecrets((all) =>
                              all.filter((other) => other.client !== client.client_id),
                            );
                          } catch (error) {
                            setFailure(error as Error);
                            setMessage(undefined);
                          }
                          clients.reload();
                        }}
                      />
                    )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

/**
 * A new client's secret with a way to copy it: the clipboard where the browser allows it (a
 * secure context), else the text selected for the person's own copy keystroke.
 */
function SecretNotice({
  client,
  secret,
  onDismiss,
}: {
  client: string;
  secret: string;
  onDismiss: () => void;
}) {
  const code = useRef<HTMLElement>(null);
  const [copied, setCopied] = useState<string | undefined>(undefined);
  const selectSecret = () => {
    const element = code.current;
    const selection = window.getSelection();
    if (!element || !selection) return;
    const range = document.createRange();
    range.selectNodeContents(element);
    selection.removeAllRanges();
    selection.addRange(range);
    setCopied("Selected: press Ctrl+C (⌘C on a Mac) to copy.");
  };
  const copy = async () => {
    try {
      if (!navigator.clipboard) throw new Error("no clipboard");
      await navigator.clipboard.writeText(secret);
      setCopied("Copied.");
    } catch {
      selectSecret();
    }
  };
  return (
    <div class="notice notice-success secret-notice" role="status">
      <strong>Client {client} created.</strong>
      <span>
        Its secret is shown only now; keep it before dismissing this:{" "}
        <code class="secret" ref={code}>
          {secret}
        </code>
      </span>
      <div class="toolbar">
        <button type="button" class="button button-small" onClick={() => void copy()}>
          Copy secret
        </button>
        <button type="button" class="button button-small" onClick={onDismiss}>
          Dismiss
        </button>
        {copied && <span aria-live="polite">{copied}</span>}
      </div>
    </div>
  );
}

function NewClientForm({
  onDone,
}: {
  onDone: (created: { client_id: string; secret: string | null } | null) => void;
}) {
  const [id, setId] = useState("");
  const [name, setName] = useState("");
  const [isPublic, setPublic] = useState(false);
  const [chosenGrants, setGrants] = useState(new Set(["client_credentials"]));
  const [chosenScopes, setScopes] = useState(new Set(["ingest"]));
  const [failure, setFailure] = useState<FormFailure>({ fields: {}, general: undefined });

  const flip = (set: Set<string>, value: string) => {
    const next = new Set(set);
    if (next.has(value)) next.delete(value);
    else next.add(value);
    return next;
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    try {
      const answer = await api.request<{ client_id: string; client_secret: string | null }>(
        "POST",
        "/o/clients/",
        {
          body: {
            client_id: id.trim(),
            name: name.trim(),
            public: isPublic,
            grant_types: [...chosenGrants],
            scopes: [...chosenScopes],
          },
        },
      );
      onDone({ client_id: answer.client_id, secret: answer.client_secret });
    } catch (error) {
      setFailure(formFailure(error, ["client_id", "name", "grant_types", "scopes", "scope"]));
    }
  };

  return (
    <form class="panel form" onSubmit={submit} aria-label="New client" noValidate>
      <h3>New client</h3>
      <FormError message={failure.general} />
      <div class="form-grid">
        <Field
          label="Client id"
          name="client_id"
          value={id}
          onValue={setId}
          errors={failure.fields.client_id}
          hint="Letters, digits, . _ ~ -"
        />
        <Field
          label="Name"
          name="name"
          value={name}
          onValue={setName}
          errors={failure.fields.name}
        />
      </div>
      <fieldset class="checks">
        <legend>Grants</legend>
        {grants.map((grant) => (
          <label key={grant}>
            <input
              type="checkbox"
              checked={chosenGrants.has(grant)}
              onChange={() => setGrants(flip(chosenGrants, grant))}
            />{" "}
            {grant}
          </label>
        ))}
        {failure.fields.grant_types && (
          <p class="field-error">{failure.fields.grant_types.join(" ")}</p>
        )}
      </fieldset>
      <fieldset class="checks">
        <legend>Scopes</legend>
        {scopes.map((scope) => (
          <label key={scope}>
            <input
              type="checkbox"
              checked={chosenScopes.has(scope)}
              onChange={() => setScopes(flip(chosenScopes, scope))}
            />{" "}
            {scope}
          </label>
        ))}
        {(failure.fields.scopes ?? failure.fields.scope) && (
          <p class="field-error">
            {(failure.fields.scopes ?? failure.fields.scope ?? []).join(" ")}
          </p>
        )}
      </fieldset>
      <label class="check">
        <input type="checkbox" checked={isPublic} onChange={() => setPublic(!isPublic)} /> Public
        client (no secret; for programs that cannot keep one)
      </label>
      <div class="form-actions">
        <button type="submit" class="button button-primary">
          Create client
        </button>
        <button type="button" class="button" onClick={() => onDone(null)}>
          Cancel
        </button>
      </div>
    </form>
  );
}
