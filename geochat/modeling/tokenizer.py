"""Byte-level BPE tokenizers for small geochat models, trained with `tokenizers` on our own text.

The special tokens are those the Idefics3 processor writes around images; the grammar tags
(`<ref>`, `<box>`, ...) are ordinary added tokens, one id each, kept by
`decode(skip_special_tokens=True)` so that answers still parse. Digits are split one per token.

Location tokens (NANO.md hypothesis 3), optional: every number 0..1000 that stands alone (no letter,
digit or underscore touching it, as in `[[12,345,1000,7]]`) becomes one token instead of one token
per digit; other digit runs (`2024`, `x7`, `007`) are still split. The text is unchanged, only its
segmentation: `0`..`9` keep their digit ids, so each string has one id.
"""

import re
from collections.abc import Iterable, Iterator

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from geochat.grammar.tags import ALL_TAGS, GRAMMAR_SCALE

BOS_TOKEN = "<|im_start|>"
END_OF_UTTERANCE_TOKEN = "<end_of_utterance>"  # ends every turn; the eos token
PAD_TOKEN = "<|pad|>"
IMAGE_TOKEN = "<image>"
FAKE_IMAGE_TOKEN = "<fake_token_around_image>"
GLOBAL_IMAGE_TOKEN = "<global-img>"
MAX_TILES_PER_SIDE = 6  # Idefics3Processor names tiles <row_i_col_j> up to 6 x 6
TILE_TOKENS = tuple(
    f"<row_{row}_col_{col}>"
    for row in range(1, MAX_TILES_PER_SIDE + 1)
    for col in range(1, MAX_TILES_PER_SIDE + 1)
)
SPECIAL_TOKENS = (
    PAD_TOKEN,
    BOS_TOKEN,
    END_OF_UTTERANCE_TOKEN,
    IMAGE_TOKEN,
    FAKE_IMAGE_TOKEN,
    GLOBAL_IMAGE_TOKEN,
    *TILE_TOKENS,
)
BYTE_ALPHABET_SIZE = 256


def _strings_of(texts: Iterable[str], tokens: tuple[str, ...]) -> Iterator[str]:
    """Yields `texts` without `tokens`, which have ids of their own and need no merges."""
    pattern = re.compile("|".join(map(re.escape, tokens)))
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"the corpus must hold strings, got {type(text).__name__}")
        yield pattern.sub("", text)


def _bpe_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE whose pre-tokenizer splits every digit off on its own."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 1024,
    *,
    loc_tokens: bool = False,
    min_frequency: int = 2,
) -> PreTrainedTokenizerFast:
    """Trains a byte-level BPE tokenizer with geochat's special tokens and grammar tags.

    Args:
        texts: The corpus, e.g. the `value` strings of records' conversations.
        vocab_size: Largest size of the BPE vocabulary, the 256 bytes and the special tokens
            included (a small corpus may give fewer); grammar tags and location tokens come on
            top (`len(tokenizer)` is the total).
        loc_tokens: Add the numbers 10..1000 as single tokens (0..9 are digits already).
        min_frequency: Fewest occurrences of a pair for the trainer to merge it.

    Returns:
        A transformers tokenizer (save_pretrained / AutoTokenizer.from_pretrained round trip),
        bos `<|im_start|>`, eos `<end_of_utterance>`, pad `<|pad|>`.

    Raises:
        ValueError: When `vocab_size` leaves no room beyond the bytes and special tokens.
        TypeError: When the corpus holds something other than strings.
    """
    minimum = BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)
    if vocab_size <= minimum:
        raise ValueError(
            f"vocab_size must exceed {minimum} (bytes + special tokens), got {vocab_size}"
        )
    tokenizer = _bpe_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_strings_of(texts, SPECIAL_TOKENS + ALL_TAGS), trainer)
    tokenizer.add_tokens([AddedToken(tag, normalized=False) for tag in ALL_TAGS])
    if loc_tokens:
        numbers = [str(value) for value in range(GRAMMAR_SCALE + 1)]
        tokenizer.add_tokens([AddedToken(n, single_word=True, normalized=False) for n in numbers])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=END_OF_UTTERANCE_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=[IMAGE_TOKEN, FAKE_IMAGE_TOKEN, GLOBAL_IMAGE_TOKEN, *TILE_TOKENS],
        clean_up_tokenization_spaces=False,
    )
