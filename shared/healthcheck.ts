// The images' HEALTHCHECK (Dockerfile): GET a process's own /health on loopback. Exits 0 on a 2xx
// answer, 1 otherwise, with one line saying what it saw (Docker keeps it in the health log).

/** 0 when `url` answers 2xx within `timeoutMs`, else 1 after printing why. */
export async function probeHealth(url: string, timeoutMs = 3_000): Promise<0 | 1> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (res.ok) return 0;
    console.error(`${url} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
  } catch (error) {
    console.error(`${url}: ${(error as Error).message}`);
  }
  return 1;
}
