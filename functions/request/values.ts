/**
 * The parsers of parameter values, one per shape of value. Each takes the
 * parameter's trimmed text (undefined when absent or empty) and its name, and
 * returns a typed value or refuses it with `invalidParameter`. Which parameter
 * uses which parser is request/parameters.ts's table.
 */
import { parseBoolean } from '../config';
import { type ApiError, invalidParameter } from '../errors';
import type { RequestedFormat } from '../pipeline/encode';
import type { Length, Placement, Roi, Sides } from '../pipeline/layout';
import type { Quality } from '../pipeline/options';
import type { Channels, Rgba } from '../pipeline/types';
import { parseColour } from './colour';

export type ValueParser<T> = (text: string | undefined, name: string) => T;

/** Every value refusal reads the same way: the name, what was sent, and what would have been accepted. */
export function badValue(name: string, value: string, expected: string): ApiError {
  return invalidParameter(name, `Invalid ${name} ${JSON.stringify(value)}: expected ${expected}.`);
}

/**
 * The entry of `table` for a request's word, or undefined. Own properties
 * only: `constructor`, `__proto__` and the rest of Object.prototype are not
 * values of any parameter.
 */
function lookUp<T>(table: Readonly<Record<string, T>>, word: string): T | undefined {
  return Object.hasOwn(table, word) ? table[word] : undefined;
}

/** One word of `table`, case-insensitive; absent is `fallback`'s entry. */
export function choice<T>(table: Readonly<Record<string, T>>, fallback: string): ValueParser<T> {
  return (text, name) => {
    const word = text?.toLowerCase() ?? fallback;
    const chosen = lookUp(table, word);
    if (chosen === undefined) throw badValue(name, word, Object.keys(table).join(', '));
    return chosen;
  };
}

/** One word of `table` when given; absent is undefined, for a parameter whose default depends on another. */
export function optionalChoice<T>(table: Readonly<Record<string, T>>): ValueParser<T | undefined> {
  const parse = choice(table, '');
  return (text, name) => (text === undefined ? undefined : parse(text, name));
}

/** A boolean in the same words the configuration takes; absent is `fallback`. */
export function flag(fallback: boolean): ValueParser<boolean> {
  return (text, name) => {
    if (text === undefined) return fallback;
    const value = parseBoolean(text);
    if (value === undefined) throw badValue(name, text.toLowerCase(), 'true or false');
    return value;
  };
}

/** An integer percentage, 0 to 100; absent is `fallback`. */
export function percent(fallback: number): ValueParser<number> {
  return (text, name) => {
    if (text === undefined) return fallback;
    const number = /^\d{1,3}$/.test(text) ? Number(text) : NaN;
    if (!(number <= 100)) throw badValue(name, text, 'a whole number from 0 to 100');
    return number;
  };
}

/** Free text, such as a model's name; the parameter's own home checks it. */
export const word: ValueParser<string | undefined> = (text) => text;

/** remove.bg's named sizes, in megapixels; `full` and `auto` keep the image's own resolution. */
const NAMED_SIZES: Readonly<Record<string, number | null>> = {
  preview: 0.25,
  small: 0.25,
  regular: 0.25,
  medium: 1.5,
  hd: 4,
  '4k': 10,
  full: null,
  auto: null,
};

export const FORMATS: Readonly<Record<string, RequestedFormat>> = { auto: 'auto', png: 'png', jpg: 'jpeg', jpeg: 'jpeg', webp: 'webp', zip: 'zip' };
export const CHANNELS: Readonly<Record<string, Channels>> = { rgba: 'rgba', alpha: 'alpha' };
export const QUALITIES: Readonly<Record<string, Quality>> = { fast: 'fast', auto: 'auto', high: 'high' };
/**
 * remove.bg's foreground classification levels. Which type was detected is
 * not something these models say, so the level is accepted and changes
 * nothing (X-Type names the model).
 */
export const TYPE_LEVELS: Readonly<Record<string, true>> = { none: true, '1': true, '2': true, latest: true };
/**
 * remove.bg's shadow types: a car's contact shadow, a 3D product shadow and a
 * drop shadow. This service draws one kind, a soft drop shadow from the matte
 * (pipeline/shadow.ts), for each of them; `none` draws none. Looked up in
 * lower case, so remove.bg's `3D` is `3d` here.
 */
export const SHADOW_TYPES: Readonly<Record<string, boolean>> = { none: false, drop: true, car: true, '3d': true };
/**
 * remove.bg's foreground hints. The models here are general-purpose, so the
 * hint is accepted and has no effect. `cutout` and `mask` are this service's
 * older names for `channels=rgba` and `channels=alpha`.
 */
const FOREGROUND_TYPES = ['auto', 'person', 'product', 'animal', 'car', 'car_interior', 'car_part', 'transportation', 'graphic', 'graphics', 'other'];
const LEGACY_TYPES: Readonly<Record<string, Channels>> = { cutout: 'rgba', mask: 'alpha' };
const TYPES: Readonly<Record<string, Channels | undefined>> = {
  ...Object.fromEntries(FOREGROUND_TYPES.map((type) => [type, undefined])),
  ...LEGACY_TYPES,
};

/** remove.bg caps each side's crop margin at 50% of the subject or 500 px. */
const MAX_MARGIN_PERCENT = 50;
const MAX_MARGIN_PIXELS = 500;

/** A megapixel cap: a named size or `NMP`; null keeps the image's own resolution. */
export const size: ValueParser<number | null> = (text, name) => {
  const value = text?.toLowerCase() ?? 'auto';
  const named = lookUp(NAMED_SIZES, value);
  if (named !== undefined) return named === null ? null : named * 1e6;
  const match = /^(\d+(?:\.\d+)?)\s*mp$/.exec(value);
  const megapixels = match ? Number(match[1]) : 0;
  if (!(megapixels >= 0.01)) {
    throw badValue(name, value, `one of ${Object.keys(NAMED_SIZES).join(', ')}, or a megapixel cap such as 50MP (at least 0.01MP)`);
  }
  return megapixels * 1e6;
};

/** `30px`, `10%` or a bare number of pixels. */
function parseLength(text: string): Length | null {
  const match = /^(\d+(?:\.\d+)?)(px|%)?$/.exec(text);
  if (!match) return null;
  return { value: Number(match[1]), unit: match[2] === '%' ? '%' : 'px' };
}

function splitValues(text: string): string[] {
  return text
    .toLowerCase()
    .split(/[\s,]+/)
    .filter((part) => part !== '');
}

function percentage(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)%$/.exec(text);
  return match ? Number(match[1]) / 100 : null;
}

/** One, two or four lengths, as CSS margins: all sides; vertical horizontal; top right bottom left. */
export const margin: ValueParser<Sides> = (text = '0', name) => {
  const lengths = splitValues(text).map(parseLength);
  if (![1, 2, 4].includes(lengths.length) || lengths.some((length) => length === null)) {
    throw badValue(name, text, 'one, two or four lengths such as 10px, 5% or "10px 20px"');
  }
  const capped = (lengths as Length[]).map((length) => ({
    unit: length.unit,
    value: Math.min(length.value, length.unit === '%' ? MAX_MARGIN_PERCENT : MAX_MARGIN_PIXELS),
  }));
  const [top, right = top, bottom = top, left = right] = capped as [Length, Length?, Length?, Length?];
  return { top, right, bottom, left };
};

/** `original` (null) or a fraction from 10% to 100%. */
export const scale: ValueParser<number | null> = (text, name) => {
  const value = text?.toLowerCase() ?? 'original';
  if (value === 'original') return null;
  const fraction = percentage(value);
  if (fraction === null || fraction < 0.1 || fraction > 1) throw badValue(name, value, '"original" or a percentage from 10% to 100%');
  return fraction;
};

/** `original` (null), the centre, or one or two percentages; absent is undefined, as its default depends on `scale`. */
export const position: ValueParser<Placement | null | undefined> = (text, name) => {
  if (text === undefined) return undefined;
  const value = text.toLowerCase();
  if (value === 'original') return null;
  if (value === 'center' || value === 'centre') return { x: 0.5, y: 0.5 };
  const fractions = splitValues(value).map(percentage);
  if ((fractions.length !== 1 && fractions.length !== 2) || fractions.some((f) => f === null || f > 1)) {
    throw badValue(name, value, '"original", "center", or one or two percentages from 0% to 100% (horizontal, vertical)');
  }
  const [x, y = x] = fractions as [number, number?];
  return { x, y };
};

/** Four coordinates, `x1 y1 x2 y2`; absent is null, the whole image. */
export const roi: ValueParser<Roi | null> = (text, name) => {
  if (text === undefined) return null;
  const lengths = splitValues(text).map(parseLength);
  if (lengths.length !== 4 || lengths.some((length) => length === null || (length.unit === '%' && length.value > 100))) {
    throw badValue(name, text, 'four coordinates "x1 y1 x2 y2", each in px or %, such as "0% 0% 100% 100%"');
  }
  const [x1, y1, x2, y2] = lengths as [Length, Length, Length, Length];
  return { x1, y1, x2, y2 };
};

/** remove.bg's foreground type: a hint with no effect, or a legacy name for the channels. */
export const foregroundType: ValueParser<Channels | undefined> = (text, name) => {
  const value = text?.toLowerCase() ?? 'auto';
  if (!Object.hasOwn(TYPES, value)) throw badValue(name, value, `one of ${Object.keys(TYPES).join(', ')}`);
  return TYPES[value];
};

/** A colour to composite onto; absent is null, transparent. */
export const colour: ValueParser<Rgba | null> = (text, name) => {
  if (text === undefined) return null;
  const parsed = parseColour(text);
  if (!parsed) throw badValue(name, text, 'a hex colour (f00, ff0000, ff000080) or a CSS colour name');
  return parsed;
};
