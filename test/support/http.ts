export interface ErrorBody {
  error: { code: string; message: string };
}

export function postImage(url: string, image: Buffer, contentType = 'image/jpeg', init: RequestInit = {}): Promise<Response> {
  return fetch(url, { method: 'POST', body: image, headers: { 'content-type': contentType }, ...init });
}

export function postForm(url: string, parts: Record<string, Buffer | string>): Promise<Response> {
  const form = new FormData();
  for (const [name, value] of Object.entries(parts)) {
    if (typeof value === 'string') form.append(name, value);
    else form.append(name, new Blob([value]), `${name}.bin`);
  }
  return fetch(url, { method: 'POST', body: form });
}

export async function bodyBytes(response: Response): Promise<Buffer> {
  return Buffer.from(await response.arrayBuffer());
}
