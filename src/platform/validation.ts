import { parse as parseQueryString } from "node:querystring";
import { Ajv, type ErrorObject, type Options } from "ajv";
import type { FastifySchema, FastifySchemaCompiler } from "fastify";

const shared: Options = {
  allErrors: true,
  removeAdditional: false,
  useDefaults: true,
  strict: false,
};

// JSON bodies: a string is not a number there, and `true` is not 1. Query strings, path
// parameters and form bodies are text by nature, so only they are coerced.
const bodyAjv = new Ajv({ ...shared, coerceTypes: false });
const textAjv = new Ajv({ ...shared, coerceTypes: "array" });

/**
 * Bodies parsed from a form (`application/x-www-form-urlencoded`): text, as a query string is,
 * so validated the way one is (`machine_id=5` is the number 5, `homed=true` a boolean), as
 * Django REST Framework reads forms. JSON bodies are not coerced.
 */
const formBodies = new WeakSet<object>();

export function parseFormBody(text: string): Record<string, string | string[] | undefined> {
  const body = parseQueryString(text);
  formBodies.add(body);
  return body;
}
/** What the `email` format takes: one @, a dot after it, no spaces. */
export const emailPattern = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

for (const ajv of [bodyAjv, textAjv]) {
  ajv.addFormat("date-time", { type: "string", validate: isDateTime });
  ajv.addFormat("email", emailPattern);
}

/** ISO 8601 with a zone: year, month, day, hour, minute, second, fraction, zone, zone hour, zone minute. */
const isoTime =
  /^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?([Zz]|[+-](\d\d):?(\d\d))$/;

/**
 * The parts of an ISO 8601 time with a zone on a real calendar date, or undefined: `Date.parse`
 * rolls 2026-02-30 over to March, where PostgreSQL refuses it, so the fields are checked here
 * rather than failing in SQL.
 */
export function isoTimeParts(value: string): RegExpExecArray | undefined {
  const parts = isoTime.exec(value);
  if (!parts) return undefined;
  const number = (i: number) => Number(parts[i] ?? 0);
  const real =
    isCalendarDate(number(1), number(2), number(3)) &&
    number(4) <= 23 &&
    number(5) <= 59 &&
    number(6) <= 59 &&
    number(9) <= 15 &&
    number(10) <= 59 &&
    withinUtcYears(parts);
  return real ? parts : undefined;
}

export function isDateTime(value: string): boolean {
  // At most microseconds, as PostgreSQL keeps: it would round a seventh digit, perhaps into the
  // next day, past the checks made on the time as given.
  const parts = isoTimeParts(value);
  return parts !== undefined && (parts[7]?.length ?? 0) <= 6;
}

/**
 * Whether the time, once its zone is applied, still falls in years 1 to 9999 UTC, as every
 * reader of it (PostgreSQL's text, JavaScript's Date, ISO 8601 output) expects:
 * 0001-01-01T00:00+01:00 is a time in 1 BC.
 */
function withinUtcYears(parts: RegExpExecArray): boolean {
  const [, year, month, day, hour, minute] = parts;
  const zone = parts[8]!;
  if (zone === "Z" || zone === "z") return true;
  const offset = (Number(parts[9]) * 60 + Number(parts[10])) * (zone.startsWith("-") ? -1 : 1);
  const minutes = Number(hour) * 60 + Number(minute);
  if (year === "0001" && month === "01" && day === "01") return minutes - offset >= 0;
  if (year === "9999" && month === "12" && day === "31") return minutes - offset < 24 * 60;
  return true;
}

const daysInMonth = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** A day the Gregorian calendar has, from year 1 on (2026-02-29 and 2026-06-31 are not). */
function isCalendarDate(year: number, month: number, day: number): boolean {
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return day <= (month === 2 && leap ? 29 : daysInMonth[month - 1]!);
}

/**
 * Numerals as a client writes them in a query string or form: digits, a sign, a decimal point and
 * an exponent (for an integer, a fraction of zeros only, as DRF takes `1.0`). Ajv's coercion reads
 * text with JavaScript's `Number`, which also takes `0x10`, `0b11`, `Infinity` and blanks around
 * the digits; those are refused before it sees them. (A field that may also be text or a list,
 * `anyOf`, is left to Ajv: `0x10` may be text there.)
 */
const numerals = {
  integer: /^[+-]?\d+(\.0*)?$/,
  number: /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/,
};

type NumeralKind = keyof typeof numerals;

/** The top-level properties of a text part's schema that hold numbers, one or a list of them. */
function numeralFields(schema: unknown): Map<string, NumeralKind> {
  const fields = new Map<string, NumeralKind>();
  const kindOf = (property: unknown): NumeralKind | undefined => {
    if (typeof property !== "object" || property === null) return undefined;
    const { type, items } = property as { type?: unknown; items?: unknown };
    if (type === "integer" || type === "number") return type;
    return type === "array" ? kindOf(items) : undefined;
  };
  const properties = (schema as { properties?: Record<string, unknown> } | null)?.properties ?? {};
  for (const [name, property] of Object.entries(properties)) {
    const kind = kindOf(property);
    if (kind) fields.set(name, kind);
  }
  return fields;
}

/** Validates text (query string, path parameters, a form): numerals strictly, then coerced. */
function textValidator(schema: unknown) {
  const validate = textAjv.compile(schema as object);
  const fields = numeralFields(schema);
  const validateText = (data: unknown): boolean => {
    const errors: ErrorObject[] = [];
    if (typeof data === "object" && data !== null) {
      for (const [name, kind] of fields) {
        const value = (data as Record<string, unknown>)[name];
        const values = Array.isArray(value) ? value : [value];
        if (values.some((item) => typeof item === "string" && !numerals[kind].test(item)))
          errors.push({
            keyword: "type",
            instancePath: `/${name}`,
            schemaPath: `#/properties/${name}/type`,
            params: { type: kind },
            message: `must be ${kind}`,
          });
      }
    }
    if (errors.length > 0) {
      // The rest of the request is checked too, so every field's problem is told at once.
      const refused = new Set(errors.map((error) => error.instancePath));
      validate(data);
      const others = (validate.errors ?? []).filter(
        (error) => !refused.has(`/${error.instancePath.split("/")[1]}`),
      );
      validateText.errors = [...errors, ...others];
      return false;
    }
    const valid = validate(data) as boolean;
    validateText.errors = validate.errors ?? null;
    return valid;
  };
  validateText.errors = null as ErrorObject[] | null;
  return validateText;
}

export const validatorCompiler: FastifySchemaCompiler<FastifySchema> = ({ schema, httpPart }) => {
  if (httpPart !== "body") {
    return textValidator(schema) as ReturnType<FastifySchemaCompiler<FastifySchema>>;
  }
  const validate = bodyAjv.compile(schema as object);
  // Compiled on the first form, as most routes never get one.
  let validateForm: ReturnType<typeof textValidator> | undefined;
  const formValidator = () => {
    validateForm ??= textValidator(schema);
    return validateForm;
  };
  const validateBody = (data: unknown): boolean => {
    const path = illFormedString(data);
    if (path !== undefined) {
      validateBody.errors = [
        {
          keyword: "wellFormed",
          instancePath: path,
          schemaPath: "",
          params: {},
          message: "Not valid text: it holds half of a UTF-16 surrogate pair (\\ud800-\\udfff).",
        },
      ];
      return false;
    }
    const form = typeof data === "object" && data !== null && formBodies.has(data);
    const check = form ? formValidator() : validate;
    const valid = check(data) as boolean;
    validateBody.errors = check.errors ?? null;
    return valid;
  };
  validateBody.errors = null as ErrorObject[] | null;
  return validateBody as ReturnType<FastifySchemaCompiler<FastifySchema>>;
};

/**
 * The JSON pointer of a string (value or key) in `data` that is not well-formed UTF-16, if any:
 * JSON's `"\ud800"` escape makes one, which no database text can hold. PostgreSQL would store it
 * as U+FFFD, so a name sent would not be the name stored (and found again). Iterative: a body
 * may nest as deep as its size allows.
 */
function illFormedString(data: unknown): string | undefined {
  const loneSurrogate = /\p{Cs}/u;
  const stack: [unknown, string][] = [[data, ""]];
  while (stack.length > 0) {
    const [value, path] = stack.pop()!;
    if (typeof value === "string") {
      if (loneSurrogate.test(value)) return path;
    } else if (Array.isArray(value)) {
      for (const [i, item] of value.entries()) stack.push([item, `${path}/${i}`]);
    } else if (value !== null && typeof value === "object") {
      for (const [key, item] of Object.entries(value)) {
        if (loneSurrogate.test(key)) return path;
        stack.push([item, `${path}/${key}`]);
      }
    }
  }
  return undefined;
}

/** Turns Ajv's errors into DRF's `{field: ["reason", …]}`. */
export function fieldErrors(errors: ErrorObject[]): Record<string, string[]> {
  // Field names come from the request: `toString` must not find Object's.
  const fields: Record<string, string[]> = Object.create(null);
  for (const error of withoutUnionNoise(errors)) {
    const [field, reason] = describe(error);
    const reasons = fields[field] ?? [];
    if (!reasons.includes(reason)) reasons.push(reason);
    fields[field] = reasons;
  }
  return fields;
}

const isUnion = (error: ErrorObject) => error.keyword === "anyOf" || error.keyword === "oneOf";
const isChoice = (error: ErrorObject) => error.keyword === "const" || error.keyword === "enum";

/**
 * A value that matches no branch of a union gets an error per branch and one for the union
 * ("must match a schema in anyOf"). Kept: the branches' reasons, less a literal branch's "Not a
 * valid choice." where another branch says more (an email that may also be blank: "Enter a valid
 * email address."); the union's own only when no branch gave one.
 */
function withoutUnionNoise(errors: ErrorObject[]): ErrorObject[] {
  // Items of one array share a schema path: a branch's union is the one over its own value.
  const unionOf = (error: ErrorObject) =>
    errors.find(
      (union) =>
        isUnion(union) &&
        error.schemaPath.startsWith(`${union.schemaPath}/`) &&
        (error.instancePath === union.instancePath ||
          error.instancePath.startsWith(`${union.instancePath}/`)),
    );
  // A branch that failed at its type was not what the client meant where another branch took
  // the type and failed inside it (a list whose item is no integer): only the latter speaks.
  const branchOf = (error: ErrorObject, union: ErrorObject) =>
    error.schemaPath.slice(union.schemaPath.length + 1).split("/")[0];
  const wrongType = (error: ErrorObject, union: ErrorObject) =>
    error.keyword === "type" && error.instancePath === union.instancePath;
  const branchErrors = (union: ErrorObject) =>
    errors.filter((other) => !isUnion(other) && unionOf(other) === union);
  const tookType = (union: ErrorObject, branch: string | undefined) => {
    const own = branchErrors(union).filter((other) => branchOf(other, union) === branch);
    return own.length > 0 && !own.some((other) => wrongType(other, union));
  };
  const typeOnly = (error: ErrorObject) => {
    const union = unionOf(error);
    if (!union || !wrongType(error, union)) return false;
    const mine = branchOf(error, union);
    return branchErrors(union).some(
      (other) => branchOf(other, union) !== mine && tookType(union, branchOf(other, union)),
    );
  };
  const kept = errors.filter((error) => {
    if (typeOnly(error)) return false;
    if (isUnion(error) || !isChoice(error)) return true;
    const union = unionOf(error);
    return !errors.some(
      (other) => !isUnion(other) && !isChoice(other) && union && unionOf(other) === union,
    );
  });
  return kept.filter((error) => !isUnion(error) || !kept.some((other) => unionOf(other) === error));
}

function describe(error: ErrorObject): [string, string] {
  const path = error.instancePath.split("/").slice(1).join(".");
  const field = (name: string) => (path ? `${path}.${name}` : name);
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case "required":
      return [field(String(params.missingProperty)), "This field is required."];
    case "additionalProperties":
      return [field(String(params.additionalProperty)), "Unknown field."];
    case "type":
      return [path || "non_field_errors", typeMessage(String(params.type))];
    case "maxLength":
      return [path, `Ensure this field has no more than ${params.limit} characters.`];
    case "minLength":
      return [
        path,
        Number(params.limit) === 1
          ? "This field may not be blank."
          : `Ensure this field has at least ${params.limit} characters.`,
      ];
    case "maximum":
      return [path, `Ensure this value is less than or equal to ${params.limit}.`];
    case "minimum":
      return [path, `Ensure this value is greater than or equal to ${params.limit}.`];
    case "exclusiveMinimum":
      return [path, `Ensure this value is greater than ${params.limit}.`];
    case "maxItems":
      return [path, `Ensure this field has no more than ${params.limit} elements.`];
    case "minItems":
      return [path, `Ensure this field has at least ${params.limit} elements.`];
    case "format":
      return [path, formatMessage(String(params.format))];
    case "enum":
    case "const":
      return [path, "Not a valid choice."];
    case "pattern":
    case "anyOf":
    case "oneOf":
      return [path, "Enter a valid value."];
    default:
      return [path || "non_field_errors", error.message ?? "Invalid value."];
  }
}

function typeMessage(type: string): string {
  if (type.includes("integer")) return "A valid integer is required.";
  if (type.includes("number")) return "A valid number is required.";
  if (type.includes("boolean")) return "Must be a valid boolean.";
  if (type.includes("string")) return "Not a valid string.";
  if (type.includes("array")) return "Expected a list of items.";
  if (type.includes("object")) return "Expected an object.";
  return `Expected ${type}.`;
}

function formatMessage(format: string): string {
  if (format === "date-time")
    return "Datetime has wrong format. Use ISO 8601, e.g. 2026-01-31T12:00:00Z.";
  if (format === "email") return "Enter a valid email address.";
  return `Enter a valid ${format}.`;
}
