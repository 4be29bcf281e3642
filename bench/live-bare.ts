// The ceiling the live feed is measured against: a bare `ws` server that produces the same
// samples at the same rate (20 machines × 5 axes at 10 Hz) and broadcasts the same bytes (one
// serialization per machine, one for all) to clients subscribed as Spindle's are.
// Usage: live-bare.ts PORT MACHINES_JSON
import { type WebSocket, WebSocketServer } from "ws";

const [port, machinesJson] = process.argv.slice(2);
const machines = JSON.parse(machinesJson!) as number[];
const axisNames = ["X", "Y", "Z", "A", "C"];
const server = new WebSocketServer({ port: Number(port), host: "127.0.0.1" });
/** machine id, or 0 for all. */
const subscriptions = new Map<WebSocket, number>();
server.on("connection", (ws) => {
  ws.on("message", (data) => {
    const message = JSON.parse(String(data));
    subscriptions.set(ws, message.machines?.[0] ?? 0);
  });
  ws.on("close", () => subscriptions.delete(ws));
  ws.on("error", () => {});
});

let seq = 0;
setInterval(() => {
  seq += 1;
  const update_timestamp = new Date().toISOString();
  const byMachine = new Map<number, object[]>();
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
  const encoded = new Map<number, Buffer>();
  const encode = (key: number) => {
    let bytes = encoded.get(key);
    if (!bytes) {
      const data = key === 0 ? [...byMachine.values()].flat() : byMachine.get(key);
      bytes = Buffer.from(JSON.stringify({ type: "axis_data", seq, data }));
      encoded.set(key, bytes);
    }
    return bytes;
  };
  for (const [ws, key] of subscriptions) ws.send(encode(key), { binary: false });
}, 100);
process.stdout.write("listening\n");
