import { unpack } from "msgpackr";
import { WebSocket } from "ws";

// biome-ignore lint/suspicious/noExplicitAny: messages are whatever JSON the server sent
export type Message = Record<string, any>;

/** A real WebSocket client that records every message and how it closed, for tests. */
export class LiveTestClient {
  readonly messages: Message[] = [];
  /** Per message, whether it came in a binary (MessagePack) frame rather than a text (JSON) one. */
  readonly binary: boolean[] = [];
  closed: { code: number; reason: string } | undefined;
  private cursor = 0;

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data, isBinary) => {
      this.messages.push(isBinary ? unpack(data as Buffer) : JSON.parse(String(data)));
      this.binary.push(isBinary);
    });
    ws.on("close", (code, reason) => {
      this.closed = { code, reason: String(reason) };
    });
    ws.on("error", () => {});
  }

  static open(url: string, headers: Record<string, string> = {}): Promise<LiveTestClient> {
    const ws = new WebSocket(url, { headers });
    const client = new LiveTestClient(ws);
    return new Promise((resolve, reject) => {
      ws.once("open", () => resolve(client));
      ws.once("unexpected-response", (_request, response) =>
        reject(new Error(`upgrade refused: ${response.statusCode}`)),
      );
      ws.once("error", reject);
    });
  }

  send(message: unknown): void {
    this.ws.send(typeof message === "string" ? message : JSON.stringify(message));
  }

  /** The next message (after those already taken) that matches, waiting up to `ms`. */
  async next(match: (message: Message) => boolean = () => true, ms = 10_000): Promise<Message> {
    const deadline = Date.now() + ms;
    for (;;) {
      while (this.cursor < this.messages.length) {
        const message = this.messages[this.cursor++]!;
        if (match(message)) return message;
      }
      if (this.closed) throw new Error(`closed ${this.closed.code} ${this.closed.reason}`);
      if (Date.now() > deadline) throw new Error("no matching message in time");
      await sleep(5);
    }
  }

  /** Sends a request and waits for its answer, skipping pushes. */
  async ask(message: Message, type: string): Promise<Message> {
    this.send(message);
    return this.next((answer) => answer.type === type && answer.seq === undefined);
  }

  async closedWith(ms = 10_000): Promise<{ code: number; reason: string }> {
    await until(() => this.closed !== undefined, ms);
    return this.closed!;
  }

  close(): void {
    this.ws.terminate();
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `condition` holds; bounded, so a missing event fails rather than hangs. */
export async function until(condition: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(5);
  }
}
