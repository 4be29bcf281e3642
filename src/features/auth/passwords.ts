import { type Algorithm, hash, verify } from "@node-rs/argon2";

// OWASP's first Argon2id recommendation: 19 MiB of memory, 2 passes, 1 lane.
// Algorithm.Argon2id is an ambient const enum, which isolated modules cannot read; its value is 2.
const argon2id = { algorithm: 2 as Algorithm, memoryCost: 19456, timeCost: 2, parallelism: 1 };

export const hashPassword = (password: string): Promise<string> => hash(password, argon2id);

// Verifying against this when a username is unknown makes a failed login take as long as a
// wrong password, so timing does not tell which usernames exist.
let decoy: Promise<string> | undefined;

export async function verifyPassword(passwordHash: string | undefined, password: string) {
  if (passwordHash === undefined) {
    decoy ??= hashPassword("decoy password, never matches");
    await verify(await decoy, password).catch(() => false);
    return false;
  }
  return verify(passwordHash, password).catch(() => false);
}

const commonPasswords = new Set([
  "password",
  "password1",
  "password123",
  "12345678",
  "123456789",
  "1234567890",
  "qwertyuiop",
  "qwerty123",
  "iloveyou",
  "admin123",
  "letmein1",
  "welcome1",
  "11111111",
  "00000000",
  "abc12345",
  "passw0rd",
  "changeme",
  "sunshine",
  "football",
  "baseball",
  "trustno1",
  "superman",
]);

/** Django's default password validators, in spirit: reasons a password is refused. */
export const maxPasswordLength = 1024;

export function passwordProblems(password: string, username: string): string[] {
  const problems: string[] = [];
  if (password.length < 8) {
    problems.push("This password is too short. It must contain at least 8 characters.");
  }
  // The API's schema holds this too; the CLI and ADMIN_PASSWORD come here only.
  if (password.length > maxPasswordLength) {
    problems.push(
      `This password is too long. It must contain at most ${maxPasswordLength} characters.`,
    );
  }
  if (/^\d+$/.test(password)) problems.push("This password is entirely numeric.");
  if (commonPasswords.has(password.toLowerCase())) problems.push("This password is too common.");
  if (username && password.toLowerCase().includes(username.toLowerCase())) {
    problems.push("The password is too similar to the username.");
  }
  return problems;
}
