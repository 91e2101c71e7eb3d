// The API's errors are application/problem+json (RFC 9457): shown as their title and detail.

export class ApiError extends Error {
  readonly status: number;
  readonly title: string;
  readonly detail: string | null;

  constructor(status: number, title: string, detail: string | null) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
  }
}

export function problemFrom(status: number, body: unknown, fallbackTitle: string): ApiError {
  if (typeof body === "object" && body !== null) {
    const problem = body as Record<string, unknown>;
    const title = typeof problem.title === "string" ? problem.title : fallbackTitle;
    let detail: string | null = null;
    if (typeof problem.detail === "string") detail = problem.detail;
    else if (Array.isArray(problem.detail)) detail = JSON.stringify(problem.detail);
    return new ApiError(status, title, detail);
  }
  return new ApiError(status, fallbackTitle, typeof body === "string" && body ? body : null);
}
