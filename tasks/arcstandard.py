"""The arc-standard transition system, its static oracle, and Chen and Manning's (2014) features.

A configuration has a stack (node 0, the root, at its bottom), a buffer of the words
not yet read (1..n, read in order) and the arcs built so far. Transitions:
  SHIFT             move the buffer's first word onto the stack;
  LEFT-ARC(label)   s1 <- s0: the second word of the stack becomes a dependent of the top;
  RIGHT-ARC(label)  s1 -> s0: the top becomes a dependent of the second, and is popped.
Transition ids: 0 is SHIFT, 1..L are LEFT-ARC of labels 0..L-1, L+1..2L are RIGHT-ARC.
The root takes a RIGHT-ARC only when the buffer is empty, so every parse ends with one
word attached to the root and one head for every word.
"""
import bisect

SHIFT = 0
NONE = -1  # an empty position (no such word)


def transition_count(n_labels):
    """SHIFT, and a LEFT-ARC and a RIGHT-ARC for each of the labels."""
    return 1 + 2 * n_labels


class Configuration:
    """A parser state for a sentence of n words."""

    def __init__(self, n):
        self.n = n
        self.stack = [0]
        self.next = 1  # the first word of the buffer
        self.heads = [NONE] * (n + 1)
        self.labels = [NONE] * (n + 1)
        self.left = [[] for _ in range(n + 1)]  # left dependents of each node, in word order
        self.right = [[] for _ in range(n + 1)]  # right dependents, in word order

    def terminal(self):
        return self.next > self.n and len(self.stack) == 1

    def can_shift(self):
        return self.next <= self.n

    def can_left(self):
        return len(self.stack) > 2

    def can_right(self):
        return len(self.stack) > 2 or (len(self.stack) == 2 and self.next > self.n)

    def apply(self, transition, n_labels):
        if transition == SHIFT:
            self.stack.append(self.next)
            self.next += 1
        elif transition <= n_labels:
            top = self.stack[-1]
            self._attach(self.stack.pop(-2), top, transition - 1)
        else:
            top = self.stack.pop()
            self._attach(top, self.stack[-1], transition - 1 - n_labels)

    def _attach(self, dependent, head, label):
        self.heads[dependent] = head
        self.labels[dependent] = label
        bisect.insort(self.left[head] if dependent < head else self.right[head], dependent)


def static_oracle(config, gold_heads, gold_labels, n_labels, gold_children):
    """The gold transition for a configuration of a projective tree, or None if there is none.

    gold_heads, gold_labels: per node 0..n (node 0 unused); gold_children: how many
    dependents each node has in the gold tree. LEFT-ARC when s1's head is s0; RIGHT-ARC when
    s0's head is s1 and s0 has all its dependents; otherwise SHIFT.
    """
    stack = config.stack
    if len(stack) > 2 and gold_heads[stack[-2]] == stack[-1]:
        return 1 + gold_labels[stack[-2]]
    if len(stack) >= 2 and config.can_right() and gold_heads[stack[-1]] == stack[-2]:
        top = stack[-1]
        if len(config.left[top]) + len(config.right[top]) == gold_children[top]:
            return 1 + n_labels + gold_labels[top]
    return SHIFT if config.can_shift() else None


def oracle_transitions(sentence_heads, sentence_labels, n_labels):
    """The oracle's transitions for a sentence (heads 1-based per word), or None if it is not projective."""
    n = len(sentence_heads)
    gold_heads = [NONE] + list(sentence_heads)
    gold_labels = [NONE] + list(sentence_labels)
    gold_children = [0] * (n + 1)
    for head in sentence_heads:
        gold_children[head] += 1
    config = Configuration(n)
    transitions = []
    while not config.terminal():
        transition = static_oracle(config, gold_heads, gold_labels, n_labels, gold_children)
        if transition is None:
            return None
        transitions.append(transition)
        config.apply(transition, n_labels)
    return transitions


def feature_tokens(config):
    """Chen and Manning's 18 token positions: s0-s2, b0-b2, then for s0 and s1 their first and
    second leftmost and rightmost dependents, and the leftmost of the leftmost and the rightmost
    of the rightmost. NONE where there is no such word."""
    stack, left, right = config.stack, config.left, config.right
    tokens = [stack[-1 - i] if len(stack) > i else NONE for i in range(3)]
    tokens += [config.next + i if config.next + i <= config.n else NONE for i in range(3)]
    children = []
    for node in tokens[:2]:
        if node == NONE:
            children += [NONE] * 6
            continue
        lc1 = left[node][0] if left[node] else NONE
        rc1 = right[node][-1] if right[node] else NONE
        children += [lc1, rc1,
                     left[node][1] if len(left[node]) > 1 else NONE,
                     right[node][-2] if len(right[node]) > 1 else NONE,
                     left[lc1][0] if lc1 != NONE and left[lc1] else NONE,
                     right[rc1][-1] if rc1 != NONE and right[rc1] else NONE]
    # the order of Chen and Manning: s0's four children, s1's four, then the two grandchildren of each
    first, second = children[:6], children[6:]
    return tokens + first[:4] + second[:4] + first[4:] + second[4:]


NULL, UNKNOWN, ROOT = 0, 1, 2  # the first ids of the word and tag vocabularies; label ids are label + 1, NULL 0


def features(config, word_ids, tag_ids):
    """48 ids: the words and tags of the 18 feature tokens, and the arc labels of the 12 dependents.

    word_ids, tag_ids: per node 0..n (index 0 unused), in vocabularies that start NULL, UNKNOWN, ROOT.
    """
    tokens = feature_tokens(config)
    words = [NULL if t == NONE else ROOT if t == 0 else word_ids[t] for t in tokens]
    tags = [NULL if t == NONE else ROOT if t == 0 else tag_ids[t] for t in tokens]
    labels = [NULL if t == NONE else config.labels[t] + 1 for t in tokens[6:]]
    return words + tags + labels
