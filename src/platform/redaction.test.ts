import { describe, expect, it } from "vitest";
import { redactedUrl } from "./redaction.ts";

describe("redactedUrl", () => {
  it.each([
    ["/ws/machine_data/?token=spa_secret", "/ws/machine_data/?token=[redacted]"],
    ["/ws/machine_data/?TOKEN=spa_secret&x=1", "/ws/machine_data/?TOKEN=[redacted]&x=1"],
    ["/ws/machine_data/?token[]=spa_secret", "/ws/machine_data/?token[]=[redacted]"],
    ["/ws/machine_data/?token%5B%5D=spa_secret", "/ws/machine_data/?token%5B%5D=[redacted]"],
    ["/ws/machine_data/?%74oken=spa_secret", "/ws/machine_data/?%74oken=[redacted]"],
    ["/a/?access_token=a&refresh_token=b", "/a/?access_token=[redacted]&refresh_token=[redacted]"],
    [
      "/o/token/?client_secret=s&password=p",
      "/o/token/?client_secret=[redacted]&password=[redacted]",
    ],
    ["/a/?x=1&token=a&token=b", "/a/?x=1&token=[redacted]&token=[redacted]"],
    // A name that is not valid percent-encoding is still looked at as sent.
    ["/a/?token%zz=a", "/a/?token%zz=[redacted]"],
    ["/a/?token", "/a/?token=[redacted]"],
  ])("hides the secret in %s", (url, logged) => {
    expect(redactedUrl(url)).toBe(logged);
    expect(redactedUrl(url)).not.toMatch(/spa_secret|=a(&|$)|=b$|=s&|=p$/);
  });

  it.each(["/users/me/?x=", "/users/me/?x=1&y=", "/users/spa_", "/a/?q=sps_"])(
    "hides a Spindle token or client secret under any name or none: %s…",
    (prefix) => {
      const secret = "spa_Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eA-_x";
      for (const kind of ["spa_", "spr_", "sps_"]) {
        const value = kind + secret.slice(4);
        const logged = redactedUrl(`${prefix}${value}&z=1`);
        expect(logged).not.toContain(value.slice(4, 24));
        expect(logged).toContain("[redacted]");
        expect(logged).toContain("z=1");
      }
    },
  );

  it.each([
    "/api/axis-data/?machine_id=1,2&from=2026-11-24T00:00:00Z",
    "/data/machines/?machine_name=spa_short",
    "/data/machines/",
    "/a/?",
    "/a/?&&x=1",
  ])("leaves %s as it is", (url) => {
    expect(redactedUrl(url)).toBe(url);
  });
});
