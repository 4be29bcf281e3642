// The ceiling the live feed is measured against: a bare `ws` server that produces the same
// samples at the same rate (20 machines × 5 axes at 10 Hz) and broadcasts the same bytes (one
// serialization per machine and encoding, one for all) to clients subscribed as Spindle's are.
// It stamps each sample when it makes it, the point that matches the ingest call's stamp.
// Usage: live-bare.ts PORT MACHINES_JSON
import { WebSocket, WebSocketServer } from "ws";
import { encodeRows, type Frame, type LiveEncoding } from "../src/features/live/live-encoding.ts";
import { axisFields } from "../src/features/live/live-messages.ts";

const [port, machinesJson] = process.argv.slice(2);
const machines = JSON.parse(machinesJson!) as number[];
const axisNames = ["X", "Y", "Z", "A", "C"];
const server = new WebSocketServer({ port: Number(port), host: "127.0.0.1" });
/** machine id (0 for all) and encoding. */
const subscriptions = new Map<WebSocket, { machine: number; encoding: LiveEncoding }>();
server.on("connection", (ws) => {
  ws.on("message", (data) => {
    const message = JSON.parse(String(data));
    // It has no windows: acknowledgements (and anything but a subscription) change nothing.
    if (message.type !== "subscribe") return;
    subscriptions.set(ws, {
      machine: message.machines?.[0] ?? 0,
      encoding: message.encoding ?? "json",
    });
  });
  ws.on("close", () => subscriptions.delete(ws));
  ws.on("error", () => {});
});

// Spindle numbers ticks from its start time in microseconds; the same digits make the same bytes.
let seq = Date.now() * 1000;
setInterval(() => {
  seq += 1;
  const update_timestamp = new Date().toISOString();
  const byMachine = new Map<number, Record<string, unknown>[]>();
  for (const [m, machine_id] of machines.entries()) {
    byMachine.set(
      machine_id,
      axisNames.map((axis_name, a) => {
        const position = Math.sin(seq / 10 + a) * 100;
        return {
          axis: m * 5 + a + 1,
          machine_id,
          machine_name: `Machine ${machine_id}`,
          axis_name,
          actual_position: position,
          target_position: position + 1,
          distance_to_go: 1,
          homed: true,
          acceleration: 1,
          velocity: 10,
          update_timestamp,
        };
      }),
    );
  }
  const encoded = new Map<string, Frame>();
  for (const [ws, { machine, encoding }] of subscriptions) {
    if (ws.readyState !== WebSocket.OPEN) continue;
    const key = `${machine} ${encoding}`;
    let frame = encoded.get(key);
    if (!frame) {
      const rows = machine === 0 ? [...byMachine.values()].flat() : byMachine.get(machine)!;
      frame = encodeRows({ type: "axis_data", seq, rows, fields: axisFields }, encoding);
      encoded.set(key, frame);
    }
    ws.send(frame.data, { binary: frame.binary });
  }
}, 100);
process.stdout.write("listening\n");
