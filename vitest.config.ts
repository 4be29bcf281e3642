import { defineConfig } from "vitest/config";

// Every test file runs against the embedded database; when TEST_DATABASE_URL is set, the
// whole suite runs a second time against that PostgreSQL server (test/helpers/database.ts
// gives each file its own schema there, so runs never see each other's rows).
const databases = ["embedded", ...(process.env.TEST_DATABASE_URL ? ["postgres"] : [])];

export default defineConfig({
  test: {
    pool: "forks",
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: databases.map((database) => ({
      extends: true,
      test: {
        name: database,
        include: ["src/**/*.test.ts", "test/**/*.test.ts"],
        env: { TEST_DB_KIND: database },
      },
    })),
  },
});
