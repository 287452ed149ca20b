"""Reading and writing CoNLL-U files (Universal Dependencies), for the tagging and parsing tasks.

A sentence is a block of word lines, ten tab-separated fields each (ID FORM LEMMA UPOS
XPOS FEATS HEAD DEPREL DEPS MISC), ended by a blank line; lines starting with # are
comments. Lines whose ID is a range (3-4, a multiword token) or a decimal (8.1, an
empty node) are not words and are skipped. Words are numbered 1..n; head 0 is the root.
"""
import io
import os
import re
from dataclasses import dataclass, field
from typing import Optional

from tinyprop.tasks.files import DataError, write_bytes
from tinyprop.tasks.settings import Settings, retold

# Numeric fields are ASCII digits only ([0-9], not \d, which matches any Unicode digit; and not int(), which also
# takes "+3", " 3", "3_0" and Arabic-Indic digits).
WORD_ID = re.compile(r"[1-9][0-9]*\Z")
HEAD = re.compile(r"[0-9]+\Z")
SKIPPED_ID = re.compile(r"([1-9][0-9]*-[1-9][0-9]*|(0|[1-9][0-9]*)\.[1-9][0-9]*)\Z")  # ranges, empty nodes (0.1 too)
TREEBANK_FILES = {"train": "en_ewt-ud-train.conllu", "dev": "en_ewt-ud-dev.conllu", "test": "en_ewt-ud-test.conllu"}


def locate_treebank(data_dir=None):
    """The three EWT files, in DIR/ud-english-ewt or DIR (DIR: --data-dir, else $TINYPROP_DATA)."""
    folder = data_dir or os.environ.get("TINYPROP_DATA")
    if not folder:
        raise DataError("the tagger and the parser read UD English EWT from --data-dir or TINYPROP_DATA, "
                        "and neither is set")
    for where in (os.path.join(folder, "ud-english-ewt"), folder):
        paths = {split: os.path.join(where, name) for split, name in TREEBANK_FILES.items()}
        if all(os.path.isfile(path) for path in paths.values()):
            return paths
    raise DataError(f"{', '.join(TREEBANK_FILES.values())} not found in {folder} nor in {folder}/ud-english-ewt")


def read_splits(paths, max_sentences=None, splits=tuple(TREEBANK_FILES)):
    """{split: sentences} of the treebank files `paths`; with max_sentences, the first ones of each split."""
    return {split: read_conllu(paths[split])[:max_sentences] for split in splits}


@dataclass
class Sentence:
    """One sentence's words; index i of each list is word i + 1."""
    forms: list = field(default_factory=list)
    upos: list = field(default_factory=list)
    xpos: list = field(default_factory=list)
    heads: list = field(default_factory=list)
    deprels: list = field(default_factory=list)
    lines: list = field(default_factory=list)  # the original lines (comments, tokens, words), to write back

    def __len__(self):
        return len(self.forms)


def read_text(path, stream=None):
    """The lines of a UTF-8 text file, each ending in \n (\r\n and \r read as \n, as Python's text files do)
    but perhaps the last; a byte order mark, as some Windows editors write, is fine. stream: an open binary
    stream to read instead (stdin), which `path` then names in messages. A file that cannot be read, or is
    not UTF-8, is a DataError naming it."""
    try:
        if stream is None:
            with open(path, "rb") as opened:
                data = opened.read()
        else:
            data = stream.read()
    except OSError as error:
        raise DataError(f"{path}: cannot read it ({error.strerror})") from error
    try:
        return list(io.StringIO(data.decode("utf-8-sig"), newline=None))
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error


def read_conllu(path, parsed=True, stream=None):
    """The sentences of a CoNLL-U file: a list of `Sentence` (forms, UPOS, XPOS, heads, relations, the lines
    to write back). A malformed line is a DataError naming the file and line.

    parsed=False: sentences to parse, whose HEAD and DEPREL are not read (they may be _): their heads and
    deprels are empty. stream: an open binary stream to read instead (stdin), which `path` names in messages.
    """
    sentences, current = [], Sentence()
    for number, raw in enumerate(read_text(path, stream), 1):
        line = raw.rstrip("\n")
        if not line.strip():
            if current.forms:
                if parsed:
                    _check_heads(path, number, current)
                sentences.append(current)
            current = Sentence()
            continue
        current.lines.append(line)
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            hint = ""
            if len(fields) == 1 and len(line.split()) == 10:
                hint = "; its 10 columns are separated by spaces: CoNLL-U separates them by tabs"
            elif len(fields) == 1 and " " in line.strip():  # words separated by spaces: plain text, most likely
                hint = ("; this looks like plain text: the parser reads CoNLL-U, one word a line (its tags may come "
                        "from a tagger: --tagger DIR)")
            raise DataError(f"{path}, line {number}: {len(fields)} tab-separated fields, CoNLL-U has 10{hint}")
        if SKIPPED_ID.match(fields[0]):
            continue
        if not WORD_ID.match(fields[0]) or int(fields[0]) != len(current.forms) + 1:
            raise DataError(f"{path}, line {number}: word ID {fields[0]!r}, expected {len(current.forms) + 1}")
        current.forms.append(fields[1])
        current.upos.append(fields[3])
        current.xpos.append(fields[4])
        if not parsed:
            continue
        if not HEAD.match(fields[6]):
            raise DataError(f"{path}, line {number}: HEAD {fields[6]!r} is not a word number "
                            "(ASCII digits: a word's ID, or 0 for the root)")
        if int(fields[6]) == int(fields[0]):
            raise DataError(f"{path}, line {number}: word {fields[0]} is its own HEAD; a word's head is "
                            "another word or 0, the root")
        current.heads.append(int(fields[6]))
        current.deprels.append(fields[7])
    if current.forms:
        if parsed:
            _check_heads(path, number, current)
        sentences.append(current)
    if not sentences:
        raise DataError(f"{path}: no sentences; is this a CoNLL-U file?")
    return sentences


def _check_heads(path, line_number, sentence):
    """Every head names a word of the sentence or the root (0), and the heads form a tree: following
    them from any word ends at the root."""
    for word, head in enumerate(sentence.heads, 1):
        if head > len(sentence):
            raise DataError(f"{path}, sentence ending before line {line_number}: word {word} has head {head}, "
                            f"but the sentence has {len(sentence)} words")
    reaches_root = {0}
    for word in range(1, len(sentence) + 1):
        chain = []
        while word not in reaches_root:
            if word in chain:
                raise DataError(f"{path}, sentence ending before line {line_number}: the heads of words "
                                f"{', '.join(map(str, sorted(chain[chain.index(word):])))} form a cycle; "
                                "a sentence's heads must form a tree")
            chain.append(word)
            word = sentence.heads[word - 1]
        reaches_root.update(chain)


def write_conllu(path, sentences, heads, deprels, xpos=None):
    """Write `sentences` with the given heads and relations (and tags) in place of theirs, as `conllu_text`
    gives them, atomically."""
    write_bytes(path, conllu_text(sentences, heads, deprels, xpos).encode("utf-8"))


def conllu_text(sentences, heads, deprels, xpos=None):
    """The CoNLL-U of `sentences` (their own lines) with the given heads and relations in place of theirs, DEPS
    cleared, and `xpos` (a tag list per sentence, if given) in place of their XPOS."""
    out = []
    for number, (sentence, sentence_heads, sentence_deprels) in enumerate(zip(sentences, heads, deprels)):
        for line in sentence.lines:
            fields = line.split("\t")
            if not line.startswith("#") and WORD_ID.match(fields[0]):
                word = int(fields[0]) - 1
                fields[6], fields[7], fields[8] = str(sentence_heads[word]), sentence_deprels[word], "_"
                if xpos is not None:
                    fields[4] = xpos[number][word]
                line = "\t".join(fields)
            out.append(line)
        out.append("")
    return "\n".join(out) + "\n"


@dataclass
class TreebankSettings(Settings):
    """What the tagger's and the parser's settings share: splits counted in sentences, the treebank's folder."""

    max_examples: Optional[int] = retold(Settings, "max_examples", help="Use at most N sentences of each split "
                                                                      "(quick runs).")
    data_dir: Optional[str] = retold(Settings, "data_dir", help="Folder with ud-english-ewt/en_ewt-ud-{train,dev,"
                                                              "test}.conllu; else $TINYPROP_DATA.")


class TreebankTask:
    """What the tagger and the parser share, as a Task's first base: UD English EWT, read by split, and a
    vocabulary of its training sentences (or a saved model's). Subclasses set `Vocabulary` (with
    `from_json`) and `Data` (made of paths, {split: sentences}, vocabulary)."""

    @classmethod
    def locate(cls, settings):
        return locate_treebank(settings.data_dir)

    @classmethod
    def load(cls, paths, limit, splits=tuple(TREEBANK_FILES), meta=None):
        sentences = read_splits(paths, limit, splits)
        vocabulary = cls.Vocabulary.from_json(meta["vocabulary"]) if meta else cls.Vocabulary(sentences["train"])
        return cls.Data(paths, sentences, vocabulary)


def check_saved_vocabulary(path, meta, keys):
    """A saved model's vocabulary (its description's "vocabulary") must be a JSON object with `keys`."""
    vocabulary = meta.get("vocabulary")
    if not isinstance(vocabulary, dict) or any(key not in vocabulary for key in keys):
        raise DataError(f"{path}: the model description has no vocabulary of {', '.join(keys)}; the file is "
                        "damaged or from an older tinyprop: train the model again")
