/**
 * What a form or JSON body holds, counted in one pass over its bytes before
 * anything is built from them. URLSearchParams makes an entry for every `&`
 * and JSON.parse a value for every member, so a 26 MB body of `a&a&…` or of
 * one huge array would cost hundreds of megabytes before it could be refused.
 */
import { ApiError, invalidParameter } from '../errors';

const AMPERSAND = 0x26;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const JSON_WHITESPACE: ReadonlySet<number> = new Set([0x20, 0x09, 0x0a, 0x0d]);

/** Where a member name's string token starts and ends (exclusive), quotes included. */
export type NameRange = readonly [start: number, end: number];

export function tooManyFields(where: string, maxFields: number): ApiError {
  return new ApiError('bad_request', `The ${where} has too many fields: at most ${maxFields}.`);
}

export function notAnObject(): ApiError {
  return new ApiError('bad_request', 'The JSON body must be an object of parameters.');
}

export function notScalar(name: string): ApiError {
  return invalidParameter(name, `The JSON member ${JSON.stringify(name)} must be a string, number or boolean.`);
}

/**
 * Refuses a form body with more than `maxFields` fields by counting its `&`
 * separators; indexOf stops at the first one past the limit, so the cost does
 * not grow with the body.
 */
export function checkFormFieldCount(body: Buffer, maxFields: number): void {
  let separators = 0;
  for (let at = body.indexOf(AMPERSAND); at !== -1; at = body.indexOf(AMPERSAND, at + 1)) {
    separators += 1;
    if (separators >= maxFields) throw tooManyFields('form body', maxFields);
  }
}

/** The closing quote of the string that opens at `opening`, or the body's end if it never closes. */
function stringEnd(body: Buffer, opening: number): number {
  let at = opening;
  for (;;) {
    at = body.indexOf(QUOTE, at + 1);
    if (at === -1) return body.length;
    let backslashes = 0;
    while (body[at - 1 - backslashes] === BACKSLASH) backslashes += 1;
    if (backslashes % 2 === 0) return at;
  }
}

/** A member name's text, or null if its token is not valid JSON (JSON.parse will then say so). */
export function decodeName(body: Buffer, range: NameRange): string | null {
  try {
    const name: unknown = JSON.parse(body.toString('utf8', range[0], range[1]));
    return typeof name === 'string' ? name : null;
  } catch {
    return null;
  }
}

/**
 * Checks, before JSON.parse, that a JSON body is one flat object of at most
 * `maxMembers` members, and returns where their names are. Strings are
 * skipped with indexOf, so their content (escapes included) is never
 * mistaken for structure. Only the shape is checked: anything else that is
 * not JSON is left for JSON.parse to refuse, which it does without building
 * much, as the shape is already bounded.
 */
export function scanJsonObject(body: Buffer, maxMembers: number): NameRange[] {
  let at = 0;
  while (at < body.length && JSON_WHITESPACE.has(body[at]!)) at += 1;
  if (at === body.length) return [];
  if (body[at] !== OPEN_BRACE) throw notAnObject();
  const names: NameRange[] = [];
  let expectName = true;
  for (at += 1; at < body.length; at += 1) {
    const byte = body[at];
    if (byte === QUOTE) {
      const end = stringEnd(body, at);
      if (expectName) {
        names.push([at, end + 1]);
        if (names.length > maxMembers) throw tooManyFields('JSON body', maxMembers);
        expectName = false;
      }
      at = end;
    } else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
      const owner = expectName ? undefined : names.at(-1);
      const name = owner === undefined ? null : decodeName(body, owner);
      if (name === null) throw new ApiError('bad_request', 'The JSON body must be a flat object of parameters.');
      throw notScalar(name);
    } else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
      // Whatever follows the object is JSON.parse's to refuse.
      break;
    } else if (byte === COMMA) {
      expectName = true;
    }
  }
  return names;
}
