import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// Preact's automatic JSX runtime through esbuild: no Babel plugin to install or run.
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    reportCompressedSize: false,
    chunkSizeWarningLimit: 300,
  },
  server: {
    // `npx vite web` during development: the API stays on Spindle's port.
    proxy: Object.fromEntries(
      [
        "/data",
        "/o",
        "/api",
        "/users",
        "/groups",
        "/permissions",
        "/register",
        "/add-user-to-group",
        "/remove-user-from-group",
      ].map((path) => [path, "http://127.0.0.1:8000"]),
    ),
  },
});
