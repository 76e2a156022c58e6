"""Credentials out of URLs and text: the one redaction every log line, error, page and ledger record goes through.

In a URL (and, given to `redact_url`, a scheme-less `user:password@host` or `host=h password=p` DSN), these
become `***`:
- the password of its user info (`user:***@`), and a user name alone that looks like a token (a GitHub or
  GitLab token, or 32+ token characters, as git remotes carry them);
- the value of every query, fragment or `;`-parameter whose key names a secret (`secret_key`): password,
  sslpassword, token, secret, api_key/apikey, access_key, key, sig/signature, X-Amz-Signature,
  X-Amz-Credential, X-Amz-Security-Token, a SAS token's sig, AccountKey, connection_string...

In free text (a driver's error, a log line) every URL (known by its scheme) is redacted so, `key=value`
pairs whose key names a secret lose their value (a libpq conninfo string), and each secret those carry, as
written and percent-decoded, is masked wherever else it appears: a driver that echoes the password is
caught too. Where a value's end is unclear the mask takes more, never less: a password holding an
unencoded `@` is masked up to the URL's last `@`, and a URL's last value takes the punctuation after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, unquote_plus

MASK = "***"

# A key names a secret if it contains one of these words, or ends in _key/_sig (or is `key`, `sig`, `pass`).
_SECRET_WORDS = re.compile(
    r"passw|pwd|passphrase|secret|token|credential|private|api_?key|access_?key|account_?key|auth|session|signature"
    r"|sas|connection_?string"
)
_SECRET_ENDINGS = re.compile(r"(^|_)(key|sig|pass)$")
_TOKEN_USER = re.compile(r"(gh[pousr]_|github_pat_|glpat-|xox[abpr]-)\S+|[\w-]{32,}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# Where a URL ends in text: whitespace, quotes, angle brackets, a backtick.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]*")
# user, then an optional :password up to the last @ (a password with an unencoded @ is masked whole).
_USERINFO = re.compile(r"(?P<user>[^\s:/?#@]*)(?::(?P<password>.*))?@")
_PARAMETER = re.compile(r"(?P<start>[?&;#])(?P<key>[^=?&;#]*)=(?P<value>[^&;#]*)")
_PUNCTUATION = ".,:;!?)]"
# A value masked before (a message redacted twice), maybe with the sentence's punctuation after it; or none.
_ALREADY_MASKED = re.compile(rf"({re.escape(MASK)}[{re.escape(_PUNCTUATION)}]*)?")
_PAIR_IN_TEXT = re.compile(r"(?P<key>[A-Za-z_][\w.-]*)(?P<eq>\s*=\s*)(?P<value>'[^']*'|\"[^\"]*\"|[^\s&;,'\")]+)")


def secret_key(name: str) -> bool:
    """Whether a key (a query parameter, a config option, an environment variable) names a secret."""
    normal = unquote_plus(name).strip().lower().replace("-", "_")
    return bool(_SECRET_WORDS.search(normal) or _SECRET_ENDINGS.search(normal))


def _variants(value: str) -> set[str]:
    """A secret as written and as a reader decodes it (percent- and form-encoded); in text, a URL's last value
    may have taken in the sentence's punctuation (`...?password=p: refused`), so also without it."""
    found = {value, unquote(value), unquote_plus(value)}
    return {v for v in found | {v.rstrip(_PUNCTUATION) for v in found} if v}


def _scan(url: str, user: bool = True) -> tuple[str, set[str]]:
    """`url` redacted (without its user info unless `user`), and the secrets it carried."""
    found: set[str] = set()
    scheme = _SCHEME.match(url)
    head, rest = (url[: scheme.end()], url[scheme.end() :]) if scheme else ("", url)
    userinfo = _USERINFO.match(rest)
    if userinfo:
        name, password = userinfo["user"], userinfo["password"]
        if password is not None:
            found |= _variants(password)
            shown = f"{name}:{MASK}@"
        elif _TOKEN_USER.fullmatch(name):
            found |= _variants(name)
            shown = f"{MASK}@"
        else:
            shown = userinfo.group()
        rest = (shown if user else "") + rest[userinfo.end() :]

    def parameter(match: re.Match[str]) -> str:
        if not secret_key(match["key"]) or _ALREADY_MASKED.fullmatch(match["value"]):
            return match.group()
        found.update(_variants(match["value"]))
        return f"{match['start']}{match['key']}={MASK}"

    rest = _PARAMETER.sub(parameter, rest)
    if not scheme:  # a keyword DSN (host=h password=p) or some other text passed as a URL
        rest = _pairs(rest, found)
    return head + _mask(rest, found), found


def _mask(text: str, found: set[str]) -> str:
    """`text` with every secret in `found`, as written or percent-encoded, replaced by the mask."""
    for secret in sorted(found | {quote(s, safe="") for s in found}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _pairs(text: str, found: set[str]) -> str:
    """`text` with the value of every `key=value` whose key names a secret masked (and added to `found`)."""

    def pair(match: re.Match[str]) -> str:
        if not secret_key(match["key"]) or _ALREADY_MASKED.fullmatch(match["value"]):
            return match.group()
        found.update(_variants(match["value"].strip("'\"")))
        return f"{match['key']}{match['eq']}{MASK}"

    return _PAIR_IN_TEXT.sub(pair, text)


def redact_url(url: str, user: bool = True) -> str:
    """`url` with its password, a token as its user name and its secret parameters' values masked; a URL
    without credentials comes back unchanged, a malformed one masked as far as it reads as one. Without
    `user`, the user info is left out altogether: for a URL that names something (a git repository) whose
    identity must not depend on who reached it."""
    return _scan(url, user)[0]


def url_secrets(url: str) -> set[str]:
    """The secrets `url` carries (its password, secret parameters' values), as written and decoded: what a
    driver's message about it may echo."""
    return _scan(url)[1]


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Free text with every URL in it redacted, the value of every `key=value` whose key names a secret
    masked, and every secret (those given, and those the URLs and pairs carried) masked wherever it appears."""
    found = {variant for secret in secrets if secret for variant in _variants(secret)}

    def url(match: re.Match[str]) -> str:
        shown, carried = _scan(match.group())
        found.update(carried)
        return shown

    return _mask(_pairs(_URL_IN_TEXT.sub(url, text), found), found)


def error_line(error: BaseException, url: str = "") -> str:
    """The first line of `error` (the driver's own where SQLAlchemy wrapped it), with the credentials of `url`
    and of any URL it names masked: what a message about the database at `url` may say."""
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    return redact_text(lines[0] if lines else type(error).__name__, url_secrets(url))
