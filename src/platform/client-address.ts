import { isIPv6 } from "node:net";

/**
 * The key a client's address is counted under by the per-address limits. An IPv6 host is given a
 * whole /64 (one customer's network, by RFC 6177's practice) and may take any address in it, so
 * counting addresses one by one would let one host stand for billions: a /64 counts as one. An
 * IPv4 address written as IPv6 (`::ffff:192.0.2.1`, from a dual-stack socket) is that IPv4
 * address. Anything else (IPv4, or text that is no address) is counted as it is.
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1]!;
  const bare = address.replace(/%.*$/, ""); // a zone (fe80::1%eth0) names the link, not the host
  if (!isIPv6(bare)) return address;
  return `${ipv6Groups(bare).slice(0, 4).join(":")}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address, in hex without leading zeros. */
function ipv6Groups(address: string): string[] {
  const [head = "", tail] = address.split("::");
  const part = (text: string) => (text === "" ? [] : text.split(":")).flatMap(withIPv4);
  const left = part(head);
  const right = tail === undefined ? [] : part(tail);
  const zeros = Array(8 - left.length - right.length).fill("0");
  return [...left, ...zeros, ...right].map((group) => Number.parseInt(group, 16).toString(16));
}

/** A trailing dotted IPv4 (`::ffff:1.2.3.4`, `64:ff9b::1.2.3.4`) as its two groups. */
function withIPv4(group: string): string[] {
  if (!group.includes(".")) return [group];
  const [a = 0, b = 0, c = 0, d = 0] = group.split(".").map(Number);
  return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
}
