import { describe, expect, it } from "vitest";
import { addressKey } from "./client-address.ts";

describe("addressKey", () => {
  it.each([
    ["192.0.2.1", "192.0.2.1"],
    ["::ffff:192.0.2.1", "192.0.2.1"],
    ["::FFFF:192.0.2.1", "192.0.2.1"],
    ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"],
    ["2001:db8:1:2::ffff", "2001:db8:1:2::/64"],
    ["2001:0db8:0001:0002:abcd::1", "2001:db8:1:2::/64"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
    ["64:ff9b::192.0.2.1", "64:ff9b:0:0::/64"],
    ["not an address", "not an address"],
  ])("counts %s as %s", (address, key) => {
    expect(addressKey(address)).toBe(key);
  });

  it("gives every address of one /64 one key, and another /64 another", () => {
    const keys = new Set(
      ["2001:db8:7:8::1", "2001:db8:7:8:ffff:ffff:ffff:ffff", "2001:db8:7:8::a:b"].map(addressKey),
    );
    expect(keys.size).toBe(1);
    expect(addressKey("2001:db8:7:9::1")).not.toBe(addressKey("2001:db8:7:8::1"));
  });
});
