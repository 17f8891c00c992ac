import base64
import json
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import pytest

from conveyor.engine.executors.base import Stream
from conveyor.engine.mask import Masker, MaskingSink

SECRET = "s3cr3t-T0ken/with+chars"


class ListSink:
    def __init__(self) -> None:
        self.lines: list[tuple[Stream, str]] = []

    def write(self, stream: Stream, line: str) -> None:
        self.lines.append((stream, line))


def test_raw_secret_is_masked_everywhere_in_the_line() -> None:
    masker = Masker([SECRET])
    assert masker.mask(f"token={SECRET} again {SECRET}.") == "token=*** again ***."


def test_text_without_secrets_is_unchanged() -> None:
    assert Masker([SECRET]).mask("nothing to see here") == "nothing to see here"


@pytest.mark.parametrize(
    "encode",
    [
        base64.b64encode,
        base64.urlsafe_b64encode,
        lambda raw: base64.b64encode(raw).rstrip(b"="),
        lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"="),
    ],
    ids=["standard", "url-safe", "standard-unpadded", "url-safe-unpadded"],
)
@pytest.mark.parametrize("secret", ["abcd", "abcde", "abcdef?>?~~~"])
def test_base64_forms_are_masked_entirely(encode: Callable[[bytes], bytes], secret: str) -> None:
    encoded = encode(secret.encode()).decode()
    assert Masker([secret]).mask(f"x {encoded} y") == "x *** y"


@pytest.mark.parametrize("prefix", ["", "u:", "us:", "use:", "user:"])
def test_secret_inside_a_longer_base64_blob_is_masked_at_every_offset(prefix: str) -> None:
    secret = "hunter2-password"
    blob = base64.b64encode(f"{prefix}{secret}@example.org".encode()).decode()
    masked = Masker([secret]).mask(f"Authorization: Basic {blob}")

    assert masked.startswith("Authorization: Basic ")
    kept = masked.removeprefix("Authorization: Basic ")
    assert "***" in kept
    # Only the characters that mix secret bits with neighbouring bytes may survive:
    # at most one on each side of the secret's 8 * 16 / 6 = 21 characters.
    secret_chars = len(secret) * 8 // 6
    assert len(kept.replace("***", "")) <= len(blob) - (secret_chars - 2)
    # The text around the secret is kept: the user:/@example.org parts still decode.
    tail = kept.split("***")[-1]
    assert len(tail) >= len(blob) - len(base64.b64encode(f"{prefix}{secret}".encode())) - 1


def test_url_encoded_forms_are_masked() -> None:
    secret = "p@ss word/&=ü"
    masker = Masker([secret])
    for encoded in (quote(secret, safe=""), quote(secret), quote_plus(secret)):
        assert encoded != secret
        assert masker.mask(f"https://h/?p={encoded}&x=1") == "https://h/?p=***&x=1"


def test_json_escaped_forms_are_masked() -> None:
    secret = 'he said "hi"\\ then\nleft ü→'
    masker = Masker([secret])
    for document in (
        json.dumps({"password": secret}),
        json.dumps({"p": secret}, ensure_ascii=False),
    ):
        assert masker.mask(document).endswith(': "***"}')


def test_hex_forms_are_masked() -> None:
    masker = Masker([SECRET])
    hexed = SECRET.encode().hex()
    assert masker.mask(f"dump {hexed}") == "dump ***"
    assert masker.mask(f"dump {hexed.upper()}") == "dump ***"


def test_each_line_of_a_multiline_secret_is_masked_on_its_own() -> None:
    key = "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\nab\n-----END KEY-----"
    masker = Masker([key])
    assert masker.mask("-----BEGIN KEY-----") == "***"
    assert masker.mask("  MIIBOgIBAAJBAKj34GkxFhD9  ") == "  ***  "
    # Lines under three characters are not masked on their own.
    assert masker.mask("ab") == "ab"


def test_longest_pattern_wins_when_secrets_overlap() -> None:
    masker = Masker(["abcdef", "abc"])
    assert masker.mask("abcdefgh abcx") == "***gh ***x"


@pytest.mark.parametrize("short", ["", "a", "ab"])
def test_too_short_secrets_are_ignored(short: str) -> None:
    masker = Masker([short])
    assert not masker.active
    assert masker.mask("a banana and abba") == "a banana and abba"


def test_empty_masker_is_a_passthrough() -> None:
    empty = Masker.empty()
    assert not empty.active
    assert empty.mask("anything") == "anything"
    assert Masker([SECRET]).active


def test_masking_sink_masks_every_line_before_passing_it_on() -> None:
    inner = ListSink()
    sink = MaskingSink(inner, Masker([SECRET]))
    sink.write(Stream.STDOUT, f"echo {SECRET}")
    sink.write(Stream.STDERR, "clean line")
    sink.write(Stream.SYSTEM, base64.b64encode(SECRET.encode()).decode())
    assert inner.lines == [
        (Stream.STDOUT, "echo ***"),
        (Stream.STDERR, "clean line"),
        (Stream.SYSTEM, "***"),
    ]


# --- secrets broken across lines (issue 12) -------------------------------------------

LONG_SECRET = "ghp_Zk3rT9vQ2mW8xY1aB4cD6eF0gH5jK7lN"


def test_whole_text_masking_finds_a_secret_split_across_two_lines() -> None:
    masker = Masker([LONG_SECRET])
    text = f"AssertionError: bad token '{LONG_SECRET[:15]}\n{LONG_SECRET[15:]}' rejected"

    masked = masker.mask_text(text)

    assert masked == "AssertionError: bad token '***\n***' rejected"
    assert LONG_SECRET[:6] not in masked and LONG_SECRET[-6:] not in masked


@pytest.mark.parametrize("prefix", ["", "user:", "Authorization: Bearer "])
def test_whole_text_masking_finds_base64_wrapped_at_76_columns(prefix: str) -> None:
    secret = LONG_SECRET * 3  # 108 bytes: its base64 needs more than one 76-column line
    wrapped = base64.encodebytes(f"{prefix}{secret}".encode()).decode()
    assert wrapped.count("\n") >= 2

    masked = Masker([secret]).mask_text(wrapped)

    # Only the characters of the prefix (and of the padding it shifts) survive.
    survivors = masked.replace("***", "").replace("\n", "")
    assert len(survivors) <= len(base64.b64encode(prefix.encode())) + 3
    assert masked.count("\n") == wrapped.count("\n")  # the lines stay lines


def test_a_streamed_log_masks_a_secret_split_across_two_lines() -> None:
    inner = ListSink()
    sink = MaskingSink(inner, Masker([LONG_SECRET]))
    sink.write(Stream.STDOUT, f"token: {LONG_SECRET[:10]}")
    sink.write(Stream.STDOUT, f"{LONG_SECRET[10:]} (wrapped)")
    sink.write(Stream.STDOUT, "next line")

    assert [line for _, line in inner.lines] == ["token: ***", "*** (wrapped)", "next line"]


def test_a_streamed_log_masks_base64_wrapped_at_76_columns_over_three_lines() -> None:
    secret = LONG_SECRET * 4  # 144 bytes: 200 base64 characters
    inner = ListSink()
    sink = MaskingSink(inner, Masker([secret]))
    for line in base64.encodebytes(f"user:{secret}".encode()).decode().splitlines():
        sink.write(Stream.STDOUT, line)

    shown = "".join(line for _, line in inner.lines)
    encoded = base64.b64encode(f"user:{secret}".encode()).decode()
    assert len(inner.lines) == 3
    # At most the characters mixing "user:" with the secret survive, nothing of the rest.
    assert len(shown.replace("***", "")) <= len("dXNlcj") + 3
    assert encoded[10:60] not in shown


def test_a_tail_that_merely_starts_like_a_secret_is_not_carried_into_an_unrelated_line() -> None:
    inner = ListSink()
    sink = MaskingSink(inner, Masker([LONG_SECRET]))
    sink.write(Stream.STDOUT, "ends with ghp")
    sink.write(Stream.STDOUT, "Zk3 is not the rest")

    assert [line for _, line in inner.lines] == ["ends with ghp", "Zk3 is not the rest"]


def test_including_more_secrets_masks_both_and_mask_bytes_leaves_binary_alone() -> None:
    masker = Masker([SECRET]).including([LONG_SECRET])

    assert masker.mask_text(f"{SECRET} {LONG_SECRET}") == "*** ***"
    assert masker.including([SECRET]) is masker
    assert masker.mask_bytes(f"<x>{SECRET}</x>".encode()) == b"<x>***</x>"
    binary = b"\xff\xfe" + SECRET.encode()
    assert masker.mask_bytes(binary) == binary
