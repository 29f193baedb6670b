import { ApiError } from '../errors';
import type { RequestedFormat } from '../pipeline/encode';
import type { Length, Placement, Roi, Sides } from '../pipeline/layout';
import type { Quality, RemovalOptions } from '../pipeline/options';
import type { ShadowOptions } from '../pipeline/shadow';
import type { Channels, Rgba } from '../pipeline/types';
import { parseColour } from './colour';

export type RequestParameters = Readonly<Record<string, string | undefined>>;

/** Where the images come from; read by request/sources.ts. */
export const IMAGE_PARAMETERS = ['image_file', 'image_file_b64', 'image_url'] as const;
export const BACKGROUND_IMAGE_PARAMETERS = ['bg_image_file', 'bg_image_url'] as const;

export const OPTION_PARAMETERS = [
  'size',
  'type',
  'format',
  'channels',
  'bg_color',
  'crop',
  'crop_margin',
  'scale',
  'position',
  'roi',
  'model',
  'post_process',
  'refine',
  'quality',
  'semitransparency',
  'type_level',
  'shadow_type',
  'shadow_opacity',
  'add_shadow',
] as const;

export const KNOWN_PARAMETERS: ReadonlySet<string> = new Set([...IMAGE_PARAMETERS, ...BACKGROUND_IMAGE_PARAMETERS, ...OPTION_PARAMETERS]);

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

const FORMATS: Readonly<Record<string, RequestedFormat>> = { auto: 'auto', png: 'png', jpg: 'jpeg', jpeg: 'jpeg', webp: 'webp', zip: 'zip' };
const CHANNELS: Readonly<Record<string, Channels>> = { rgba: 'rgba', alpha: 'alpha' };
const QUALITIES: Readonly<Record<string, Quality>> = { fast: 'fast', high: 'high' };
/**
 * remove.bg's foreground classification levels. Which type was detected is
 * not something these models say, so the level is accepted and changes
 * nothing (X-Type names the model).
 */
const TYPE_LEVELS: Readonly<Record<string, true>> = { none: true, '1': true, '2': true, latest: true };
/**
 * remove.bg's shadow types: a car's contact shadow, a 3D product shadow and a
 * drop shadow. This service draws one kind, a soft drop shadow from the matte
 * (pipeline/shadow.ts), for each of them; `none` draws none. Looked up in
 * lower case, so remove.bg's `3D` is `3d` here.
 */
const SHADOW_TYPES: Readonly<Record<string, boolean>> = { none: false, drop: true, car: true, '3d': true };
/** remove.bg's shadow_opacity when none is given, in percent. */
const DEFAULT_SHADOW_OPACITY = 50;
/**
 * remove.bg's foreground hints. The models here are general-purpose, so the
 * hint is accepted and has no effect. `cutout` and `mask` are this service's
 * older names for `channels=rgba` and `channels=alpha`.
 */
const FOREGROUND_TYPES = new Set(['auto', 'person', 'product', 'animal', 'car', 'car_interior', 'car_part', 'transportation', 'graphic', 'graphics', 'other']);
const LEGACY_TYPES: Readonly<Record<string, Channels>> = { cutout: 'rgba', mask: 'alpha' };

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off']);

/** remove.bg caps each side's crop margin at 50% of the subject or 500 px. */
export const MAX_MARGIN_PERCENT = 50;
export const MAX_MARGIN_PIXELS = 500;

export function invalidParameter(name: string, value: string, expected: string): ApiError {
  return new ApiError('invalid_parameter', `Invalid ${name} ${JSON.stringify(value)}: expected ${expected}.`);
}

/**
 * An empty table of parameters with no prototype, so that `__proto__` is kept
 * as a name (and refused as unknown) instead of silently setting one.
 */
export function parameterTable(): Record<string, string> {
  return Object.create(null) as Record<string, string>;
}

/**
 * A parameter given twice in one place (the query string, or one body): which
 * of the two was meant would be a guess. Once in the query and once in the
 * body is not this: the body wins.
 */
export function repeatedParameter(name: string, where: string): ApiError {
  return new ApiError('invalid_parameter', `The parameter ${JSON.stringify(name)} is given more than once in the ${where}: give it once.`);
}

/**
 * The query string's parameters. Express parses `?a=1&a=2` into an array (and
 * an extended parser `?a[b]=1` into an object); neither is a value any
 * parameter takes, and dropping them would hide the mistake.
 */
export function stringParameters(source: unknown): Record<string, string> {
  const result = parameterTable();
  if (source && typeof source === 'object') {
    for (const [key, value] of Object.entries(source as Record<string, unknown>)) {
      if (typeof value === 'string') result[key] = value;
      else if (Array.isArray(value)) throw repeatedParameter(key, 'query string');
      else throw new ApiError('invalid_parameter', `The parameter ${JSON.stringify(key)} must be a plain value, not a structure.`);
    }
  }
  return result;
}

/**
 * The entry of `table` for a request's word, or undefined. Own properties
 * only: `constructor`, `__proto__` and the rest of Object.prototype are not
 * values of any parameter.
 */
function lookUp<T>(table: Readonly<Record<string, T>>, word: string): T | undefined {
  return Object.hasOwn(table, word) ? table[word] : undefined;
}

/** Typos would otherwise be silently ignored and the caller would wonder why nothing changed. */
export function checkParameterNames(names: Iterable<string>): void {
  for (const name of names) {
    if (!KNOWN_PARAMETERS.has(name)) {
      throw new ApiError('invalid_parameter', `Unknown parameter ${JSON.stringify(name)}; known parameters: ${[...KNOWN_PARAMETERS].join(', ')}.`);
    }
  }
}

function choice<T>(parameters: RequestParameters, name: string, table: Readonly<Record<string, T>>, fallback: string): T {
  const value = parameters[name]?.trim().toLowerCase() || fallback;
  const chosen = lookUp(table, value);
  if (chosen === undefined) throw invalidParameter(name, value, Object.keys(table).join(', '));
  return chosen;
}

/** A boolean; absent or empty is `fallback`. */
function flag(parameters: RequestParameters, name: string, fallback = false): boolean {
  const value = parameters[name]?.trim().toLowerCase() ?? '';
  if (value === '') return fallback;
  if (TRUE_WORDS.has(value)) return true;
  if (FALSE_WORDS.has(value)) return false;
  throw invalidParameter(name, value, 'true or false');
}

function parseSize(value: string | undefined): number | null {
  const text = value?.trim().toLowerCase() || 'auto';
  const named = lookUp(NAMED_SIZES, text);
  if (named !== undefined) return named === null ? null : named * 1e6;
  const match = /^(\d+(?:\.\d+)?)\s*mp$/.exec(text);
  const megapixels = match ? Number(match[1]) : 0;
  if (!(megapixels >= 0.01)) {
    throw invalidParameter('size', text, `one of ${Object.keys(NAMED_SIZES).join(', ')}, or a megapixel cap such as 50MP (at least 0.01MP)`);
  }
  return megapixels * 1e6;
}

/** `30px`, `10%` or a bare number of pixels. */
function parseLength(text: string): Length | null {
  const match = /^(\d+(?:\.\d+)?)(px|%)?$/.exec(text);
  if (!match) return null;
  return { value: Number(match[1]), unit: match[2] === '%' ? '%' : 'px' };
}

function splitValues(text: string): string[] {
  return text
    .trim()
    .toLowerCase()
    .split(/[\s,]+/)
    .filter((part) => part !== '');
}

/** One, two or four lengths, as CSS margins: all sides; vertical horizontal; top right bottom left. */
function parseMargin(value: string | undefined): Sides {
  const expected = 'one, two or four lengths such as 10px, 5% or "10px 20px"';
  const text = value ?? '0';
  const lengths = splitValues(text).map(parseLength);
  if (![1, 2, 4].includes(lengths.length) || lengths.some((length) => length === null)) {
    throw invalidParameter('crop_margin', text, expected);
  }
  const capped = (lengths as Length[]).map((length) => ({
    unit: length.unit,
    value: Math.min(length.value, length.unit === '%' ? MAX_MARGIN_PERCENT : MAX_MARGIN_PIXELS),
  }));
  const [top, right = top, bottom = top, left = right] = capped as [Length, Length?, Length?, Length?];
  return { top, right, bottom, left };
}

function percentage(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)%$/.exec(text);
  return match ? Number(match[1]) / 100 : null;
}

function parseScale(value: string | undefined): number | null {
  const text = value?.trim().toLowerCase() || 'original';
  if (text === 'original') return null;
  const fraction = percentage(text);
  if (fraction === null || fraction < 0.1 || fraction > 1) throw invalidParameter('scale', text, '"original" or a percentage from 10% to 100%');
  return fraction;
}

function parsePosition(value: string | undefined, scaled: boolean): Placement | null {
  const text = value?.trim().toLowerCase() || (scaled ? 'center' : 'original');
  if (text === 'original') return null;
  if (text === 'center' || text === 'centre') return { x: 0.5, y: 0.5 };
  const fractions = splitValues(text).map(percentage);
  if ((fractions.length !== 1 && fractions.length !== 2) || fractions.some((f) => f === null || f > 1)) {
    throw invalidParameter('position', text, '"original", "center", or one or two percentages from 0% to 100% (horizontal, vertical)');
  }
  const [x, y = x] = fractions as [number, number?];
  return { x, y };
}

function parseRoi(value: string | undefined): Roi | null {
  if (value === undefined || value.trim() === '') return null;
  const lengths = splitValues(value).map(parseLength);
  if (lengths.length !== 4 || lengths.some((length) => length === null || (length.unit === '%' && length.value > 100))) {
    throw invalidParameter('roi', value, 'four coordinates "x1 y1 x2 y2", each in px or %, such as "0% 0% 100% 100%"');
  }
  const [x1, y1, x2, y2] = lengths as [Length, Length, Length, Length];
  return { x1, y1, x2, y2 };
}

function parseChannels(parameters: RequestParameters): Channels {
  const type = parameters.type?.trim().toLowerCase() || 'auto';
  const legacy = lookUp(LEGACY_TYPES, type);
  if (!legacy && !FOREGROUND_TYPES.has(type)) {
    throw invalidParameter('type', type, `one of ${[...FOREGROUND_TYPES, ...Object.keys(LEGACY_TYPES)].join(', ')}`);
  }
  if (parameters.channels !== undefined && parameters.channels.trim() !== '') return choice(parameters, 'channels', CHANNELS, 'rgba');
  return legacy ?? 'rgba';
}

function parseBackgroundColour(value: string | undefined): Rgba | null {
  if (value === undefined || value.trim() === '') return null;
  const colour = parseColour(value);
  if (!colour) throw invalidParameter('bg_color', value, 'a hex colour (f00, ff0000, ff000080) or a CSS colour name');
  return colour;
}

/** An integer percentage, 0 to 100; absent or empty is `fallback`. */
function percent(parameters: RequestParameters, name: string, fallback: number): number {
  const value = parameters[name]?.trim() ?? '';
  if (value === '') return fallback;
  const number = /^\d{1,3}$/.test(value) ? Number(value) : NaN;
  if (!(number <= 100)) throw invalidParameter(name, value, 'a whole number from 0 to 100');
  return number;
}

/**
 * `shadow_type` when given, else `add_shadow`, the boolean remove.bg had
 * before it (deprecated there, still sent by older clients). All three are
 * checked either way, so a bad `add_shadow` beside a `shadow_type` is still
 * refused. An opacity of 0 is no shadow at all: nothing to draw, and no room
 * for crop to keep.
 */
function parseShadow(parameters: RequestParameters): ShadowOptions | null {
  const added = flag(parameters, 'add_shadow');
  const drawn = parameters.shadow_type?.trim() ? choice(parameters, 'shadow_type', SHADOW_TYPES, 'none') : added;
  const opacity = percent(parameters, 'shadow_opacity', DEFAULT_SHADOW_OPACITY);
  return drawn && opacity > 0 ? { opacity: opacity / 100 } : null;
}

/** Validates every option, so a bad one is refused before any image is decoded or fetched. */
export function parseRemovalOptions(parameters: RequestParameters): RemovalOptions {
  const scale = parseScale(parameters.scale);
  const model = parameters.model?.trim();
  choice(parameters, 'type_level', TYPE_LEVELS, 'none');
  const shadow = parseShadow(parameters);
  return {
    model: model === '' ? undefined : model,
    maxPixels: parseSize(parameters.size),
    postProcess: flag(parameters, 'post_process'),
    refine: flag(parameters, 'refine'),
    quality: choice(parameters, 'quality', QUALITIES, 'fast'),
    layout: {
      roi: parseRoi(parameters.roi),
      crop: flag(parameters, 'crop'),
      cropMargin: parseMargin(parameters.crop_margin),
      scale,
      position: parsePosition(parameters.position, scale !== null),
      shadow: shadow !== null,
    },
    encode: {
      format: choice(parameters, 'format', FORMATS, 'auto'),
      channels: parseChannels(parameters),
    },
    backgroundColour: parseBackgroundColour(parameters.bg_color),
    semitransparency: flag(parameters, 'semitransparency', true),
    shadow,
  };
}
