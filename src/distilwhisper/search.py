"""The token search of the torch decoder, assembled from small parts as openai-whisper assembles its own: logit
filters that each enforce one rule on the next token's logits, and two searches (greedy or sampled; beam) that ask
a `step` function for those logits.  A new decoding rule is one new filter, added where `decoding.logit_filters`
assembles them from the options; the searches stay as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

Step = Callable[..., torch.Tensor]  # step(tokens[, sot_at]) -> next-token logits (and the logits after SOT)


class LogitFilter(Protocol):
    def apply(self, logits: torch.Tensor, generated: list[list[int]], step: int) -> torch.Tensor:
        """The logits of each row (`generated`: the tokens it has produced so far; `step`: how many)."""


@dataclass
class SuppressTokens:
    """Tokens never produced (the model's suppress list: non-speech symbols, special tokens)."""

    mask: torch.Tensor  # bool over the vocabulary

    def apply(self, logits: torch.Tensor, generated: list[list[int]], step: int) -> torch.Tensor:
        return logits.masked_fill(self.mask, -math.inf)


@dataclass
class SuppressAtBegin:
    """Tokens not produced first (a blank, the end of text): an empty transcript is never the likeliest start."""

    mask: torch.Tensor

    def apply(self, logits: torch.Tensor, generated: list[list[int]], step: int) -> torch.Tensor:
        return logits.masked_fill(self.mask, -math.inf) if step == 0 else logits


@dataclass
class TimestampRules:
    """Whisper's timestamp grammar: the text of a segment sits between two times; after a closing time comes an
    opening one or the end; times never go back; the first token is a time of at most `max_initial` steps (1 s);
    and a time is taken whenever all times together are more likely than the likeliest text token."""

    no_timestamps: int
    eot: int
    max_initial: int = 50

    @property
    def begin(self) -> int:
        return self.no_timestamps + 1  # <|0.00|>; one token per 0.02 s after it

    def apply(self, logits: torch.Tensor, generated: list[list[int]], step: int) -> torch.Tensor:
        logits, begin = logits.clone(), self.begin
        logits[:, self.no_timestamps] = -math.inf
        for row, seq in enumerate(generated):
            last = len(seq) >= 1 and seq[-1] >= begin
            before_last = len(seq) < 2 or seq[-2] >= begin
            if last:
                if before_last:
                    logits[row, begin:] = -math.inf  # a pair just closed (or the opening time): text follows
                else:
                    logits[row, :self.eot] = -math.inf  # text then a time: another time, or the end
            times = [t for t in seq if t >= begin]
            if times:
                floor = times[-1] if last and not before_last else times[-1] + 1
                logits[row, begin:floor] = -math.inf
        if step == 0:
            logits[:, :begin] = -math.inf
            logits[:, begin + self.max_initial + 1:] = -math.inf
        logprobs = logits.float().log_softmax(-1)
        times_win = logprobs[:, begin:].logsumexp(-1) > logprobs[:, :begin].max(-1).values
        logits[times_win, :begin] = -math.inf
        return logits


def filtered(logits: torch.Tensor, filters: list[LogitFilter], generated: list[list[int]], step: int) -> torch.Tensor:
    for f in filters:
        logits = f.apply(logits, generated, step)
    return logits


def sample(step: Step, keep: Callable[[torch.Tensor], None], prompts: torch.Tensor, filters: list[LogitFilter],
           eot: int, max_new: int, temperature: float = 0.0, seed: int = 0, sot_at: int = 0,
           no_speech: int | None = None) -> list[tuple[list[int], float, float]]:
    """Greedy (`temperature` 0) or sampled decoding of a batch: (tokens, average log-probability counting the end
    of text, no-speech probability after <|startoftranscript|>) per row.  Finished rows leave the batch (`keep` is
    told which stay, so the caller drops their cache rows), so late steps cost only the unfinished ones.  Each row
    samples from its own generator, seeded alike: a window's sampled text does not depend on which windows share
    its batch (the server batches windows of unrelated requests)."""
    n, device = prompts.shape[0], prompts.device
    alive = torch.arange(n, device=device)  # original index of each row still decoding
    out: list[list[int]] = [[] for _ in range(n)]
    logprob_sum, no_speech_probs = [0.0] * n, [float("nan")] * n
    generators = [torch.Generator(device=device).manual_seed(seed) for _ in range(n)] if temperature > 0 else []
    tokens = prompts
    for i in range(max_new):
        if i == 0:
            logits, after_sot = step(tokens, sot_at)
            if no_speech is not None:
                no_speech_probs = after_sot.softmax(-1)[:, no_speech].tolist()
        else:
            logits = step(tokens)
        logits = filtered(logits, filters, [out[r] for r in alive.tolist()], i)
        logprobs = logits.log_softmax(-1)
        if temperature > 0:
            probs = (logits / temperature).softmax(-1)
            nxt = torch.cat([torch.multinomial(probs[j], 1, generator=generators[r])
                             for j, r in enumerate(alive.tolist())])
        else:
            nxt = logits.argmax(-1)
        picked = logprobs.gather(1, nxt[:, None])[:, 0]
        done = nxt == eot
        for r, t, lp in zip(alive.tolist(), nxt.tolist(), picked.tolist()):
            logprob_sum[r] += lp
            if t != eot:
                out[r].append(t)
        if bool(done.all()):
            break
        if bool(done.any()):
            rows = (~done).nonzero()[:, 0]
            keep(rows)
            alive, nxt = alive[rows], nxt[rows]
        tokens = nxt[:, None]
    return [(toks, logprob_sum[r] / (len(toks) + 1), no_speech_probs[r]) for r, toks in enumerate(out)]


def beam_search(step: Step, reorder: Callable[[torch.Tensor], None], prompt: list[int], filters: list[LogitFilter],
                eot: int, beam: int, max_new: int, device: torch.device) -> tuple[list[int], float]:
    """Beam search over one clip (the caller's encoding expanded to `beam` rows): the sum of log-probabilities,
    length-normalised (OpenAI's rule); (tokens, normalised score) of the best finished beam."""
    tokens = torch.tensor([prompt] * beam, device=device)
    seqs: list[list[int]] = [[] for _ in range(beam)]
    scores = torch.zeros(beam, device=device)
    scores[1:] = -math.inf  # all beams start identical: expand only the first at step 0
    finished: list[tuple[float, list[int]]] = []
    for i in range(max_new):
        logprobs = filtered(step(tokens), filters, seqs, i).log_softmax(-1)
        top_scores, top_idx = (scores[:, None] + logprobs).flatten().topk(2 * beam)
        vocab = logprobs.shape[-1]
        rows, nxt, next_scores, next_seqs = [], [], [], []
        for s, idx in zip(top_scores.tolist(), top_idx.tolist()):
            row, tok = divmod(idx, vocab)
            if tok == eot:
                finished.append((s / (len(seqs[row]) + 1), seqs[row]))
            else:
                rows.append(row)
                nxt.append(tok)
                next_scores.append(s)
                next_seqs.append(seqs[row] + [tok])
            if len(rows) == beam:
                break
        if len(finished) >= beam or not rows:
            break
        reorder(torch.tensor(rows, device=device))
        seqs, scores = next_seqs, torch.tensor(next_scores, device=device)
        tokens = torch.tensor(nxt, device=device)[:, None]
    if not finished:  # hit the length limit: keep the live beams as candidates
        finished = [(s / (len(q) + 1), q) for s, q in zip(scores.tolist(), seqs)]
    score, best = max(finished, key=lambda f: f[0])
    return best, score
