import { Store } from "../state/store.ts";
import { tokenRequestTimeoutMs, withRenewalLock } from "./renewal-lock.ts";
import type { TokenAnswer } from "./types.ts";

/** The public OAuth2 client the server registers for the console (no secret). */
export const clientId = "spindle-console";
const storageKey = "spindle.session";
/**
 * Why the session ended, when Spindle ended it (a refused renewal): written before the tokens
 * are removed, so the other tabs, seeing them gone, say the same. A sign-out on purpose removes
 * it, as does the next sign-in.
 */
const endedKey = "spindle.session-ended";

/** An answer other than 2xx; `fields` holds the API's `400 {field: ["reason"]}` messages. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(describe(status, body));
  }

  get fields(): Record<string, string[]> {
    const fields: Record<string, string[]> = {};
    if (this.body && typeof this.body === "object" && !Array.isArray(this.body)) {
      for (const [name, value] of Object.entries(this.body)) {
        if (Array.isArray(value)) fields[name] = value.map(String);
        else if (typeof value === "string" && name !== "error") fields[name] = [value];
      }
    }
    return fields;
  }
}

/** The server could not be reached at all, or did not answer in time. */
export class NetworkError extends Error {
  constructor(
    message: string,
    readonly timedOut = false,
  ) {
    super(message);
  }
}

function describe(status: number, body: unknown): string {
  if (body && typeof body === "object") {
    const answer = body as Record<string, unknown>;
    if (typeof answer.detail === "string") return answer.detail;
    if (typeof answer.error_description === "string") return answer.error_description;
    if (typeof answer.error === "string") return answer.error.replace(/_/g, " ");
    // `{field: ["reason"]}`: the reasons are sentences for people; the field names are not.
    const reasons = Object.values(answer).filter(Array.isArray).flat().map(String);
    if (reasons.length > 0) return reasons.join(" ");
  }
  if (status === 403) return "You do not have permission to perform this action.";
  return `The server answered ${status}.`;
}

export interface Tokens {
  access: string;
  refresh: string | undefined;
  /** Epoch milliseconds when the access token stops working. */
  expiresAt: number;
  lifetime: number;
  username: string;
  scope: string;
}

export interface SessionState {
  tokens: Tokens | null;
  /** Why the user is at the sign-in page again, if not by choice. */
  notice: string | null;
}

export type Query = Record<string, string | number | boolean | undefined | (string | number)[]>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  signal?: AbortSignal;
}

export function queryString(query: Query | undefined): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) params.set(name, value.join(","));
    else params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

/**
 * Signs in with the password grant, refreshes the tokens before they expire, and sends every API
 * request with the access token. A 401 the refresh token cannot cure ends the session; a failed
 * fetch marks the connection lost until one succeeds.
 *
 * The tokens live in localStorage: the tabs of a browser share one session, as people expect of
 * a web app (a tab opened from another, or from a bookmark, is signed in; signing out signs out
 * all). Per-tab sessionStorage cannot keep tabs apart anyway: a tab opened from another starts
 * with a copy of its tokens, and refresh tokens are single-use, so two tabs renewing the same
 * one revoked the session in both. Hence: one tab renews at a time (`withRenewalLock`), and a
 * tab that finds the tokens renewed, signed in or signed out by another (re-read under the
 * lock, and the `storage` event) follows it.
 */
export class Api {
  readonly session: Store<SessionState>;
  readonly online = new Store(true);
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshing: Promise<boolean> | undefined;
  /** Until then, a renewal is not tried again (the last failed, and its timer will retry). */
  private retryRenewalAt = 0;

  constructor(private readonly storage: Storage = localStorage) {
    this.session = new Store<SessionState>({ tokens: this.load(), notice: null });
    this.schedule();
    addEventListener("storage", (event) => {
      // `key` is null when the storage was cleared.
      if (event.storageArea === storage && (event.key === storageKey || event.key === null)) {
        this.followStorage();
      }
    });
  }

  get username(): string | undefined {
    return this.session.get().tokens?.username;
  }

  async signIn(username: string, password: string): Promise<void> {
    const answer = await this.tokenRequest({ grant_type: "password", username, password });
    this.accept(answer, username);
  }

  /** The reason for being at sign-in has been read: a new attempt's outcome replaces it. */
  clearNotice(): void {
    const state = this.session.get();
    if (state.notice) this.session.set({ ...state, notice: null });
  }

  async signOut(notice: string | null = null): Promise<void> {
    // The stored tokens, in case another tab renewed them a moment ago.
    const tokens = this.load() ?? this.session.get().tokens;
    this.end(notice);
    if (tokens) await revoke(tokens.refresh, tokens.access);
  }

  get<T>(path: string, query?: Query, signal?: AbortSignal): Promise<T> {
    return this.request<T>("GET", path, { query, signal });
  }

  /** A GET that also returns the total from `X-Total-Count`. */
  async list<T>(path: string, query?: Query): Promise<{ rows: T[]; total: number }> {
    const { body: rows, headers } = await this.getWithHeaders<T[]>(path, query);
    return { rows, total: Number(headers.get("x-total-count") ?? rows.length) };
  }

  /** A GET whose headers matter as well as its body (history states its bucket width in one). */
  async getWithHeaders<T>(
    path: string,
    query?: Query,
    signal?: AbortSignal,
  ): Promise<{ body: T; headers: Headers }> {
    const response = await this.send("GET", path, { query, signal });
    return { body: (await response.json()) as T, headers: response.headers };
  }

  /** A GET whose answer is a file (CSV export): fetched with the token, kept as a Blob. */
  async download(
    path: string,
    query?: Query,
    signal?: AbortSignal,
  ): Promise<{ blob: Blob; filename: string | undefined }> {
    const response = await this.send("GET", path, { query, signal });
    const disposition = response.headers.get("content-disposition") ?? "";
    const filename = /filename="?([^";]+)"?/.exec(disposition)?.[1];
    return { blob: await response.blob(), filename };
  }

  request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    return this.send(method, path, options).then(async (response) =>
      response.status === 204 ? (undefined as T) : ((await response.json()) as T),
    );
  }

  private async send(method: string, path: string, options: RequestOptions): Promise<Response> {
    const sentWith = this.session.get().tokens?.access;
    let response = await this.fetchWithToken(method, path, options);
    if (response.status === 401) {
      // Renewed while this request was out (renewing revokes the token it carried): try again
      // with the new token, rather than renew once more and revoke that one too.
      const renewedMeanwhile = this.session.get().tokens?.access !== sentWith;
      if (renewedMeanwhile || (await this.refresh())) {
        response = await this.fetchWithToken(method, path, options);
      } else if (this.session.get().tokens) {
        // The renewal could not be made now (Spindle away or failing); the session stands
        // and the renewal is tried again shortly.
        throw new NetworkError("Spindle cannot be reached.");
      }
    }
    // No notice when the session had already ended (signed out here or in another tab, or a
    // refused renewal, which said so) while this request was out.
    if (response.status === 401 && this.session.get().tokens) {
      this.end("Your session has ended. Please sign in again.");
    }
    if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
    return response;
  }

  private async fetchWithToken(method: string, path: string, options: RequestOptions) {
    const headers: Record<string, string> = { accept: "application/json" };
    const tokens = this.session.get().tokens;
    if (tokens) headers.authorization = `Bearer ${tokens.access}`;
    if (options.body !== undefined) headers["content-type"] = "application/json";
    try {
      const response = await fetch(path + queryString(options.query), {
        method,
        headers,
        body: options.body === undefined ? null : JSON.stringify(options.body),
        signal: options.signal ?? null,
      });
      this.online.set(true);
      return response;
    } catch (error) {
      if ((error as Error).name === "AbortError") throw error;
      this.online.set(false);
      throw new NetworkError("Spindle cannot be reached.");
    }
  }

  /**
   * Exchanges the refresh token (each is usable once): one exchange at a time in this tab, and
   * in the browser (another tab's renewal is adopted, not repeated).
   */
  refresh(): Promise<boolean> {
    // A renewal Spindle answered "not now" is retried on its timer, not by every request that
    // meets a 401 meanwhile (a poll per machine would each ask /o/token/ again).
    if (Date.now() < this.retryRenewalAt) return Promise.resolve(false);
    const held = this.session.get().tokens;
    this.refreshing ??= withRenewalLock(this.storage, async () => {
      if (!held) return false;
      // Another tab may have renewed while this one waited for the lock (presenting the used
      // refresh token again would revoke both tabs' tokens), or signed out, or in again.
      const tokens = this.load();
      if (tokens?.refresh !== held.refresh) return this.followStorage();
      if (!tokens?.refresh) {
        this.end("Your session has ended. Please sign in again.");
        return false;
      }
      try {
        const answer = await this.tokenRequest({
          grant_type: "refresh_token",
          refresh_token: tokens.refresh,
        });
        if (this.load()?.refresh !== tokens.refresh) {
          // Signed out (or in as someone else) in another tab meanwhile: that stands.
          void revoke(answer.refresh_token, answer.access_token);
          return this.followStorage();
        }
        this.accept(answer, tokens.username);
        return true;
      } catch (error) {
        // Only Spindle refusing the grant ends the session; a network failure, a proxy's 502
        // while Spindle restarts or a 429 leave it, and the renewal is tried again.
        const refused = error instanceof ApiError && error.status < 500 && error.status !== 429;
        if (!refused) {
          // An answer that says "not now" (429, 5xx), or none in time, holds renewals until the
          // timer's retry (a little before it, which must find the gate open); without a
          // network, no request meets a 401, so only the live socket's backoff asks again.
          if (error instanceof ApiError || (error instanceof NetworkError && error.timedOut)) {
            this.retryRenewalAt = Date.now() + 14_500;
          }
          this.schedule(15_000);
          return false;
        }
        // Signed out in another tab meanwhile (which revoked this token): no "session ended".
        if (this.load()?.refresh !== tokens.refresh) return this.followStorage();
        this.end("Your session has ended. Please sign in again.");
        return false;
      }
    }).finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** No answer in time is a network failure: the session stands, and the renewal is retried. */
  private async tokenRequest(form: Record<string, string>): Promise<TokenAnswer> {
    const timeout = timeoutSignal(tokenRequestTimeoutMs);
    let response: Response;
    let text: string;
    try {
      response = await fetch("/o/token/", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ ...form, client_id: clientId, scope: "read write groups" }),
        signal: timeout.signal,
      });
      // Inside the time given too: a body that stops halfway hangs as well.
      text = await response.text();
      this.online.set(true);
    } catch {
      this.online.set(false);
      throw new NetworkError("Spindle cannot be reached.", timeout.signal.aborted);
    } finally {
      timeout.clear();
    }
    let body: unknown = null;
    try {
      body = JSON.parse(text);
    } catch {
      // A proxy's page (502 while Spindle restarts): the status says enough.
    }
    if (!response.ok) throw new ApiError(response.status, body);
    return body as TokenAnswer;
  }

  private accept(answer: TokenAnswer, username: string): void {
    const tokens: Tokens = {
      access: answer.access_token,
      refresh: answer.refresh_token,
      expiresAt: Date.now() + answer.expires_in * 1000,
      lifetime: answer.expires_in * 1000,
      username,
      scope: answer.scope,
    };
    this.storage.removeItem(endedKey);
    this.storage.setItem(storageKey, JSON.stringify(tokens));
    this.adopt(tokens);
  }

  private adopt(tokens: Tokens): void {
    const current = this.session.get();
    if (current.tokens?.access !== tokens.access || current.notice) {
      this.session.set({ tokens, notice: null });
    }
    // Another tab's renewal cured what held this tab's renewals back.
    this.retryRenewalAt = 0;
    this.schedule();
  }

  /**
   * Takes what another tab stored: renewed tokens (a live socket re-authenticates with them),
   * a sign-in (this tab leaves the sign-in page), or a sign-out. True if signed in.
   */
  private followStorage(): boolean {
    const stored = this.load();
    if (stored) this.adopt(stored);
    // Ended by Spindle in the other tab: this one says so too. Signed out there: no word.
    else this.end(this.storage.getItem(endedKey));
    return stored !== null;
  }

  private end(notice: string | null): void {
    clearTimeout(this.refreshTimer);
    // Before the tokens go: the other tabs read it when they see them gone.
    if (notice) this.storage.setItem(endedKey, notice);
    else this.storage.removeItem(endedKey);
    this.storage.removeItem(storageKey);
    if (this.session.get().tokens || notice) this.session.set({ tokens: null, notice });
  }

  /** Refresh at 80% of the token's life (at least 30 s before it ends). */
  private schedule(delay?: number): void {
    clearTimeout(this.refreshTimer);
    const tokens = this.session.get().tokens;
    if (!tokens?.refresh) return;
    const margin = Math.max(30_000, tokens.lifetime * 0.2);
    const wait = delay ?? Math.max(0, tokens.expiresAt - margin - Date.now());
    // setTimeout cannot wait longer than 2^31 ms; a 10-hour token re-arms on the way.
    this.refreshTimer = setTimeout(
      () => {
        if (Date.now() >= tokens.expiresAt - margin) void this.refresh();
        else this.schedule();
      },
      Math.min(wait, 2 ** 31 - 1),
    );
  }

  /** The session stored for the browser's tabs. */
  private load(): Tokens | null {
    try {
      const tokens = JSON.parse(this.storage.getItem(storageKey) ?? "null") as Tokens | null;
      // An expired access token is kept while a refresh token may still renew it.
      return tokens && (tokens.refresh || tokens.expiresAt > Date.now()) ? tokens : null;
    } catch {
      return null;
    }
  }
}

/** RFC 7009: revoking the refresh token ends its whole family; best effort when offline. */
async function revoke(...tokens: (string | undefined)[]): Promise<void> {
  for (const token of tokens) {
    if (!token) continue;
    const timeout = timeoutSignal(tokenRequestTimeoutMs);
    await fetch("/o/revoke_token/", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token, client_id: clientId }),
      signal: timeout.signal,
    })
      .catch(() => undefined)
      .finally(timeout.clear);
  }
}

/**
 * Aborts after `ms` on the page's setTimeout, the timer every other wait of the console (the
 * renewal's schedule, its retry) runs on, rather than `AbortSignal.timeout`'s own clock.
 */
function timeoutSignal(ms: number): { signal: AbortSignal; clear: () => void } {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DOMException("No answer in time.", "TimeoutError")),
    ms,
  );
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}
