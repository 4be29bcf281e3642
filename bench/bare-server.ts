// The ceiling a Spindle endpoint is measured against: bare Fastify answering the same bytes,
// with the same content type, and nothing else. Usage: bare-server.ts PORT BODY_FILE
import { readFileSync } from "node:fs";
import Fastify from "fastify";

const [port, bodyFile] = process.argv.slice(2);
const body = readFileSync(bodyFile!);
const app = Fastify();
app.get("/*", (_request, reply) => reply.type("application/json; charset=utf-8").send(body));
await app.listen({ port: Number(port), host: "127.0.0.1" });
process.stdout.write("listening\n");
