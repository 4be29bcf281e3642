import { type ChildProcess, spawn } from "node:child_process";

export const spindleBin = new URL("../../bin/spindle", import.meta.url).pathname;

export interface SpindleRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `bin/spindle ARGS` to completion in a process of its own, as a person would. */
export function runSpindle(
  args: string[],
  env: Record<string, string>,
  input = "",
): Promise<SpindleRun> {
  return new Promise((resolve) => {
    const child = spawn(spindleBin, args, { env: { ...process.env, LOG_LEVEL: "info", ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    child.stdin.end(input);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Resolves when the process has exited, even if it already had. */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}
