//! A small deterministic mutator for the stable replay run: not coverage-guided (libFuzzer is,
//! in `scripts/fuzz`), but it walks the same kinds of edits over the seeds — byte flips,
//! deletions, duplications, splices and the tokens our parsers care about — so CI exercises
//! every target beyond its seeds on every run, the same inputs each time.

/// Tokens worth inserting: JSON and form syntax, Slack markup, numbers at the edges.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"0",
    b"1e999",
    b"18446744073709551616",
    b"-9223372036854775808",
    b"\\u0000",
    b"\\ud800",
    b"%",
    b"%zz",
    b"&",
    b"=",
    b"+",
    b"<!channel>",
    b"<@U000000001>",
    b"<#C0CONTROL>",
    b"&lt;",
    b"\xe2\x80\x9c",
    b"\xe2\x80\x9d",
    b"'",
    b"\n",
    b"\t",
    b" ",
    b"${",
    b"${SLACK_BOT_TOKEN}",
    b"}}",
    b"{{",
    b"{%",
    b"%}",
    b"AND",
    b"OR",
    b"'critical'",
    b"labels.",
    b"$TOKEN",
    b"\xff",
    b"\x00",
];

pub struct Mutator(u64);

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        // xorshift64*: plenty for choosing edits.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }

    /// A mutation of one of `seeds` (one to four edits).
    pub fn next(&mut self, seeds: &[Vec<u8>]) -> Vec<u8> {
        let mut input = seeds[self.below(seeds.len())].clone();
        for _ in 0..=self.below(4) {
            let len = input.len();
            let at = self.below(len + 1);
            match self.below(6) {
                0 if len > 0 => {
                    let i = self.below(len);
                    input[i] ^= 1 << self.below(8);
                }
                1 if len > 0 => {
                    let end = (at + 1 + self.below(16)).min(len);
                    input.drain(at.min(len)..end);
                }
                2 => {
                    let token = TOKENS[self.below(TOKENS.len())];
                    input.splice(at..at, token.iter().copied());
                }
                3 if len > 0 => {
                    let start = self.below(len);
                    let end = (start + 1 + self.below(64)).min(len);
                    let copy: Vec<u8> = input[start..end].to_vec();
                    let times = 1 + self.below(8);
                    for _ in 0..times {
                        input.splice(at..at, copy.iter().copied());
                    }
                }
                4 => {
                    let other = &seeds[self.below(seeds.len())];
                    let from = self.below(other.len() + 1);
                    input.truncate(at);
                    input.extend_from_slice(&other[from..]);
                }
                _ => {
                    let byte = self.below(256) as u8;
                    input.insert(at, byte);
                }
            }
        }
        input
    }
}
