"""The encoder against sentence-transformers, batch invariance, dtype, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from prune import Encoder, EncoderOptions, PruneConfig
from prune.models.bert import COMPILED_ATTENTION_MAX_TOKENS

pytestmark = pytest.mark.system  # the real model against sentence-transformers

PAPER = PruneConfig(min_tokens=15, quantile=0.8, layer=1)


@pytest.fixture(scope="module")
def fp32_banking(encoder: Encoder, banking_texts: list[str]) -> np.ndarray:
    """Our unpruned fp32 embeddings [3080, D] of every BANKING77 test row, encoded once for the
    module: the reference of the two every-row checks below."""
    return encoder.encode(banking_texts).embeddings


@pytest.mark.system
def test_unpruned_matches_sentence_transformers_on_every_banking77_test_row(
    fp32_banking: np.ndarray, banking_texts: list[str], model_dir
) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu")
    ref = st.encode(banking_texts, batch_size=32, convert_to_numpy=True)
    ours = fp32_banking
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    assert len(cos) == 3080
    assert cos.min() >= 0.9999, f"worst row {int(cos.argmin())}: cosine {cos.min():.6f}"


@pytest.mark.system
def test_bf16_close_to_fp32_on_every_banking77_test_row(fp32_banking: np.ndarray, banking_texts: list[str]) -> None:
    bf16 = Encoder(options=EncoderOptions(dtype="bfloat16"))
    a = fp32_banking
    b = bf16.encode(banking_texts).embeddings
    cos = (a * b).sum(1)
    assert cos.min() >= 0.999, f"worst row {int(cos.argmin())}: cosine {cos.min():.6f}"


@pytest.mark.parametrize("prune", [None, PAPER, PruneConfig(4, 0.5, 2, "norm")], ids=str)
def test_batch_invariance(banking_texts: list[str], prune: PruneConfig | None) -> None:
    enc = Encoder(prune=prune, options=EncoderOptions(token_budget=1_000_000))
    # length-mixed: shortest and longest texts and some between
    texts = sorted(banking_texts, key=len)
    sample = texts[:10] + texts[-10:] + texts[1000:1020]
    together = enc.encode(sample)
    assert together.tokens.max() > 3 * together.tokens.min()
    for i, text in enumerate(sample):
        alone = enc.encode([text])
        diff = np.abs(alone.embeddings[0] - together.embeddings[i]).max()
        assert diff <= 1e-5, f"row {i} ({text!r}): max abs diff {diff}"
        assert alone.tokens_kept[0] == together.tokens_kept[i]


def test_outputs_in_input_order_whatever_the_batching(banking_texts: list[str]) -> None:
    texts = banking_texts[:200]
    big = Encoder(options=EncoderOptions(token_budget=1_000_000)).encode(texts)
    small = Encoder(options=EncoderOptions(token_budget=64, max_batch_rows=3)).encode(texts)
    assert np.abs(big.embeddings - small.embeddings).max() <= 1e-5
    assert np.array_equal(big.tokens, small.tokens)


def test_pruning_reports_tokens_kept_by_the_rule(banking_texts: list[str]) -> None:
    enc = Encoder(prune=PAPER)
    r = enc.encode(banking_texts[:300])
    n = r.tokens.astype(int)
    want = np.where(n <= 15, n, np.maximum(15, np.ceil(0.2 * n - 1e-9).astype(int)))
    assert np.array_equal(r.tokens_kept, want)
    assert (r.tokens_kept < r.tokens).any()
    norms = np.linalg.norm(r.embeddings, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)


def test_empty_list(encoder: Encoder) -> None:
    r = encoder.encode([])
    assert r.embeddings.shape == (0, encoder.dim)
    assert len(r) == 0


def test_empty_and_whitespace_texts_encode_as_cls_sep(encoder: Encoder) -> None:
    r = encoder.encode(["", "   ", "\n\t", "hello"])
    assert r.tokens.tolist()[:3] == [2, 2, 2]  # [CLS] [SEP] only
    assert np.allclose(r.embeddings[0], r.embeddings[1], atol=1e-6)
    assert np.isfinite(r.embeddings).all()


def test_long_text_truncated_and_counted(encoder: Encoder) -> None:
    long = "my card has not arrived " * 5000  # ~120k characters
    r = encoder.encode([long, "short text"])
    assert r.tokens.tolist() == [encoder.max_length, 4]
    assert r.truncated.tolist() == [True, False]
    assert np.isfinite(r.embeddings).all()


@pytest.mark.parametrize("bad", [[None], ["ok", 3], [b"bytes"], [float("nan")]])
def test_non_string_values_rejected_with_position(encoder: Encoder, bad: list[object]) -> None:
    with pytest.raises(TypeError, match=r"texts\[\d\] is .*expected str"):
        encoder.encode(bad)  # type: ignore[arg-type]


def test_single_string_rejected(encoder: Encoder) -> None:
    with pytest.raises(TypeError, match="single str"):
        encoder.encode("hello")


def test_prune_layer_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        Encoder(prune=PruneConfig(4, 0.5, 6))


def test_unknown_score() -> None:
    with pytest.raises(ValueError, match="unknown importance score"):
        Encoder(prune=PruneConfig(4, 0.5, 1, "nope"))


def test_a_batch_with_nothing_to_prune_runs_the_unpruned_forward(encoder: Encoder, banking_texts: list[str]) -> None:
    """Short utterances (no row above min_tokens) cost nothing extra: the importance score is
    never computed and the embeddings are exactly the unpruned ones."""
    short = [t for t in banking_texts if len(encoder.tokenize([t])[0][0]) <= 12][:64]
    assert len(short) == 64
    pruned = encoder.with_prune(PruneConfig(12, 0.5, 1, "attention"))
    calls: list[int] = []
    scorer = pruned._score

    def counting(trace):  # type: ignore[no-untyped-def]
        calls.append(1)
        return scorer(trace)

    pruned._score = type(scorer)(scorer.name, scorer.needs_attention, counting, scorer.doc)
    got = pruned.encode(short)
    assert calls == [] and np.array_equal(got.embeddings, encoder.encode(short).embeddings)
    assert (got.tokens_kept == got.tokens).all()
    longer = pruned.encode([*short, banking_texts[0] + " " + banking_texts[1] + " " + banking_texts[2]])
    assert calls and (longer.tokens_kept < longer.tokens).any()  # with one long row the score runs


@pytest.mark.parametrize(
    "prune",
    [
        PruneConfig(24, 0.4, 1, "norm"),  # the tuned default: an unpruned batch never takes the long-row branch
        PruneConfig(8, 0.3, 3, "attention"),  # layer 3 in fp32 for its probabilities: layers 1-2 compiled
        PruneConfig(40, 0.3, 2, "norm"),  # s above 32: unpruned batches take both branches, pruning ones only the long
        None,
    ],
)
def test_the_graphs_compiled_at_load_are_the_ones_a_forward_reaches(
    encoder: Encoder, prune: PruneConfig | None
) -> None:
    """int8 compiles ``Encoder._graphs`` while it loads, so that no unit pays a compile: every
    (layers, attention branch) a forward asks for must be among them, and none of them unused."""
    cut = COMPILED_ATTENTION_MAX_TOKENS
    pruned = encoder.with_prune(prune)
    asked: set[tuple[int, int, bool]] = set()

    def recording(h, mask, start, stop, need_probs=False, positions=None):  # type: ignore[no-untyped-def]
        compiled_stop = stop - 1 if need_probs else stop  # the fp32 pruning layer is not compiled
        if start < compiled_stop:
            asked.add((start, compiled_stop, h.shape[1] > cut))
        return encoder.bert.run(h, mask, start, stop, need_probs, positions)

    pruned._stack = recording  # type: ignore[assignment]
    # rows of each length (with [CLS] and [SEP]) enough to fill a batch (1024 tokens) of their own
    lengths = (6, 10, 28, 36, 60)
    assert pruned.options.token_budget == 1024
    texts = [" ".join(["card"] * (n - 2)) for n in lengths for _ in range(2 * 1024 // n)]
    assert {len(x) for x in pruned.tokenize(texts)[0]} == set(lengths)
    pruned.encode(texts)
    compiled = {(start, stop, width == "long") for start, stop, width in pruned._graphs() if start < stop}
    assert asked == compiled
