/**
 * The request contract: every parameter a removal takes, what kind of thing
 * it carries and how its value is read. The body reader (upload.ts), the image
 * reader (sources.ts), the options (options.ts), the log's redaction, the CLI's
 * flags and the OpenAPI test all read this one table.
 */
import { invalidParameter, type ApiError } from '../errors';
import {
  CHANNELS,
  choice,
  colour,
  flag,
  FORMATS,
  foregroundType,
  margin,
  optionalChoice,
  percent,
  position,
  QUALITIES,
  roi,
  scale,
  SHADOW_TYPES,
  size,
  TYPE_LEVELS,
  type ValueParser,
  word,
} from './values';

/** A request's parameters by name, as text: the query string's and the body's, the body's winning. */
export type RequestParameters = Readonly<Record<string, string | undefined>>;

/** Which image a source parameter carries. */
export type ImageSlot = 'image' | 'background';

/** How the CLI offers a parameter as a flag of its own: `--name VALUE`, or `bare` when `--name` alone means true. */
export type CliFlag = 'value' | 'bare';

interface ImageParameter {
  /** An uploaded file, base64 text, or a URL to fetch. */
  kind: 'file' | 'base64' | 'url';
  slot: ImageSlot;
  /** Other multipart field names that carry the same file. */
  aliases: readonly string[];
  doc: string;
}

interface ValueParameter<T> {
  kind: 'value';
  parse: ValueParser<T>;
  doc: string;
  cli?: CliFlag;
}

function image<Kind extends ImageParameter['kind']>(kind: Kind, slot: ImageSlot, doc: string, aliases: readonly string[] = []): ImageParameter & { kind: Kind } {
  return { kind, slot, aliases, doc };
}

function value<T>(parse: ValueParser<T>, doc: string, cli?: CliFlag): ValueParameter<T> {
  return cli === undefined ? { kind: 'value', parse, doc } : { kind: 'value', parse, doc, cli };
}

/** remove.bg's shadow_opacity when none is given, in percent. */
const DEFAULT_SHADOW_OPACITY = 50;

export const PARAMETERS = {
  image_file: image('file', 'image', 'the image, as a multipart file or a raw image/* body', ['image', 'file']),
  image_file_b64: image('base64', 'image', 'the image as base64, optionally a data: URL'),
  image_url: image('url', 'image', 'the image, fetched from a public http(s) URL'),
  size: value(size, 'preview, medium, hd, 4k, full, auto, or a cap such as 2MP', 'value'),
  type: value(foregroundType, "remove.bg's foreground hint (accepted, no effect); cutout or mask", 'value'),
  format: value(choice(FORMATS, 'auto'), 'png, jpg, webp, zip (color.jpg and alpha.png) or auto', 'value'),
  channels: value(optionalChoice(CHANNELS), 'rgba, or alpha: the matte alone as a grayscale image', 'value'),
  bg_color: value(colour, 'composite onto a colour: ff0000, f00, ff000080 or a CSS name', 'value'),
  bg_image_file: image('file', 'background', 'a background image, as a multipart file'),
  bg_image_url: image('url', 'background', 'a background image, fetched from a public http(s) URL'),
  crop: value(flag(false), 'crop to the subject', 'bare'),
  crop_margin: value(margin, "crop's margin: one, two or four lengths such as 10px or 5%"),
  scale: value(scale, 'the subject at a percentage of the output, 10% to 100%, or original'),
  position: value(position, 'where a scaled subject sits: center, original, or "x% y%"'),
  roi: value(roi, 'the region to look in: "x1 y1 x2 y2" in px or %'),
  model: value(word, 'the model to run, by its registry name', 'value'),
  post_process: value(flag(false), "rembg's mask clean-up: an opening, a blur and a threshold"),
  refine: value(flag(false), 'refine edges and their colours', 'bare'),
  quality: value(choice(QUALITIES, 'auto'), 'auto: a second look at a small subject; fast: one inference; high: mirrored too'),
  semitransparency: value(flag(true), 'false hardens the matte inside the subject'),
  type_level: value(choice(TYPE_LEVELS, 'none'), "remove.bg's classification level (accepted, no effect)"),
  shadow_type: value(optionalChoice(SHADOW_TYPES), 'none, drop, car or 3d: a soft drop shadow from the matte'),
  shadow_opacity: value(percent(DEFAULT_SHADOW_OPACITY), "the shadow's opacity, 0 to 100"),
  add_shadow: value(flag(false), "remove.bg's older shadow switch"),
} as const satisfies Readonly<Record<string, ImageParameter | ValueParameter<unknown>>>;

type Table = typeof PARAMETERS;
export type ParameterName = keyof Table;
type NameOfKind<Kind> = { [Name in ParameterName]: Table[Name] extends { kind: Kind } ? Name : never }[ParameterName];
export type FileParameter = NameOfKind<'file'>;
export type ValueName = NameOfKind<'value'>;
/** Every value parameter's parsed value. */
export type ParameterValues = { [Name in ValueName]: Table[Name] extends ValueParameter<infer T> ? T : never };

const ENTRIES = Object.entries(PARAMETERS) as [ParameterName, Table[ParameterName]][];

export const PARAMETER_NAMES: readonly ParameterName[] = ENTRIES.map(([name]) => name);
const KNOWN: ReadonlySet<string> = new Set(PARAMETER_NAMES);

/** The parameters of one kind, in the table's order. */
export function parametersOfKind(kind: Table[ParameterName]['kind'], slot?: ImageSlot): ParameterName[] {
  return ENTRIES.filter(([, entry]) => entry.kind === kind && (slot === undefined || ('slot' in entry && entry.slot === slot))).map(([name]) => name);
}

/** The file parameter a multipart field name carries (its own name or an alias), or undefined. */
export function fileParameterOfField(field: string): FileParameter | undefined {
  for (const [name, entry] of ENTRIES) {
    if (entry.kind === 'file' && (name === field || entry.aliases.includes(field))) return name as FileParameter;
  }
  return undefined;
}

/** Every multipart field name that carries a file for `slot`. */
export function fileFieldsOf(slot: ImageSlot): string[] {
  return ENTRIES.flatMap(([name, entry]) => (entry.kind === 'file' && entry.slot === slot ? [name, ...entry.aliases] : []));
}

/** The CLI's own flags, by parameter name. */
export function cliFlags(): { name: ValueName; flag: CliFlag; doc: string }[] {
  return ENTRIES.flatMap(([name, entry]) =>
    entry.kind === 'value' && 'cli' in entry && entry.cli !== undefined ? [{ name: name as ValueName, flag: entry.cli, doc: entry.doc }] : [],
  );
}

/** A parameter's trimmed text, or undefined when it is absent or empty. */
export function parameterText(parameters: RequestParameters, name: ParameterName): string | undefined {
  const text = parameters[name]?.trim();
  return text ? text : undefined;
}

/** Parses every value parameter, so that a bad one is refused before any image is read. */
export function parseParameterValues(parameters: RequestParameters): ParameterValues {
  const values: Record<string, unknown> = {};
  for (const [name, entry] of ENTRIES) {
    if (entry.kind === 'value') values[name] = entry.parse(parameterText(parameters, name), name);
  }
  return values as ParameterValues;
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
  return invalidParameter(name, `The parameter ${JSON.stringify(name)} is given more than once in the ${where}: give it once.`);
}

/**
 * The query string's parameters. Express parses `?a=1&a=2` into an array (and
 * an extended parser `?a[b]=1` into an object); neither is a value any
 * parameter takes, and dropping them would hide the mistake.
 */
export function stringParameters(source: unknown): Record<string, string> {
  const result = parameterTable();
  if (source && typeof source === 'object') {
    for (const [key, text] of Object.entries(source as Record<string, unknown>)) {
      if (typeof text === 'string') result[key] = text;
      else if (Array.isArray(text)) throw repeatedParameter(key, 'query string');
      else throw invalidParameter(key, `The parameter ${JSON.stringify(key)} must be a plain value, not a structure.`);
    }
  }
  return result;
}

/**
 * Parameters written as a query string outside any request (STORAGE_OPTIONS),
 * decoded as a request's query is; a name given twice is refused as it is there.
 */
export function queryStringParameters(text: string, where: string): Record<string, string> {
  const result = parameterTable();
  for (const [name, value] of new URLSearchParams(text)) {
    if (name in result) throw repeatedParameter(name, where);
    result[name] = value;
  }
  return result;
}

/** Typos would otherwise be silently ignored and the caller would wonder why nothing changed. */
export function checkParameterNames(names: Iterable<string>): void {
  for (const name of names) {
    if (!KNOWN.has(name)) {
      throw invalidParameter(name, `Unknown parameter ${JSON.stringify(name)}; known parameters: ${PARAMETER_NAMES.join(', ')}.`);
    }
  }
}
