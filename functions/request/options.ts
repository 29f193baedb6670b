import { ApiError } from '../errors';
import type { Rgb } from '../model/registry';
import type { EncodeOptions } from '../pipeline/encode';
import type { OutputFormat, OutputType } from '../pipeline/types';

export type Parameters = Readonly<Record<string, string | undefined>>;

const FORMATS: Record<string, OutputFormat> = { png: 'png', webp: 'webp', jpeg: 'jpeg', jpg: 'jpeg' };
const TYPES: Record<string, OutputType> = { cutout: 'cutout', mask: 'mask' };

function invalid(name: string, value: string, expected: string): ApiError {
  return new ApiError('invalid_parameter', `Invalid ${name} ${JSON.stringify(value)}: expected ${expected}.`);
}

export function parseHexColour(value: string): Rgb | null {
  const match = /^#?([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(value.trim());
  if (!match) return null;
  let hex = match[1]!;
  if (hex.length === 3) hex = [...hex].map((digit) => digit + digit).join('');
  return [parseInt(hex.slice(0, 2), 16), parseInt(hex.slice(2, 4), 16), parseInt(hex.slice(4, 6), 16)];
}

/** Express may parse `?a=1&a=2` into arrays or objects; only plain strings are parameters. */
export function stringParameters(source: unknown): Record<string, string> {
  const result: Record<string, string> = {};
  if (source && typeof source === 'object') {
    for (const [key, value] of Object.entries(source as Record<string, unknown>)) {
      if (typeof value === 'string') result[key] = value;
    }
  }
  return result;
}

export function parseEncodeOptions(parameters: Parameters): EncodeOptions {
  const formatValue = parameters.format?.trim().toLowerCase() || 'png';
  const format = FORMATS[formatValue];
  if (!format) throw invalid('format', formatValue, 'png, webp or jpeg');

  const typeValue = parameters.type?.trim().toLowerCase() || 'cutout';
  const type = TYPES[typeValue];
  if (!type) throw invalid('type', typeValue, 'cutout or mask');

  let background: Rgb | null = null;
  const colour = parameters.bg_color;
  if (colour !== undefined && colour.trim() !== '') {
    background = parseHexColour(colour);
    if (!background) throw invalid('bg_color', colour, 'a hex colour such as ff0000 or #f00');
  }
  return { format, type, background };
}
