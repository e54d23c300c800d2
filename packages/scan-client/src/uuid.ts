// UUIDv7 (RFC 9562): 48-bit Unix ms, then a 12-bit counter in rand_a so ids made within one ms
// still sort in creation order, then 62 random bits. If the clock goes back, the last ms is kept.

/** "00".."ff": a lookup per byte is several times cheaper than toString(16) + padStart. */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Makes a generator of UUIDv7 strings from the clock `now` (ms); ids sort as they were made. */
export function uuidv7Generator(now: () => number): () => string {
  let lastMs = -1;
  let counter = 0;
  return () => {
    let ms = Math.floor(now());
    if (ms <= lastMs) {
      ms = lastMs;
      counter++;
      // 12 bits used up within this ms: borrow the next ms (still increasing).
      if (counter > 0xfff) {
        ms = lastMs + 1;
        counter = 0;
      }
    } else {
      counter = 0;
    }
    lastMs = ms;
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[0] = Math.floor(ms / 2 ** 40) & 0xff;
    b[1] = Math.floor(ms / 2 ** 32) & 0xff;
    b[2] = (ms >>> 24) & 0xff;
    b[3] = (ms >>> 16) & 0xff;
    b[4] = (ms >>> 8) & 0xff;
    b[5] = ms & 0xff;
    b[6] = 0x70 | (counter >>> 8);
    b[7] = counter & 0xff;
    b[8] = 0x80 | ((b[8] as number) & 0x3f);
    let s = "";
    for (let i = 0; i < 16; i++) {
      if (i === 4 || i === 6 || i === 8 || i === 10) s += "-";
      s += HEX[b[i] as number];
    }
    return s;
  };
}
