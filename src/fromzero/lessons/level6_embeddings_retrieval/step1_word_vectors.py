"""Word vectors from scratch: word2vec learns them from nothing but which words appear near which."""

from __future__ import annotations

from fromzero.data.loading import load_documents
from fromzero.embeddings.word2vec import Word2VecConfig, negative_sampling, train_word2vec
from fromzero.lessons.course import Step

TITLE = "Word vectors (word2vec)"
# Words the stories and the answers use often enough to have a vector.
PROBES = ("mother", "sun", "ran", "water", "boy")
# (a, b, c, hoped-for answer): a is to b as c is to ?
ANALOGIES = (("boy", "girl", "father", "mother"), ("sun", "day", "moon", "night"))


def run(step: Step) -> None:
    step.say("""
        A word on its own is just an id. To let a model see that *mother* and *father* are alike, each
        word gets a **vector**, and words used in the same way should get vectors pointing the same way.
        **word2vec** learns them with one trick: for each word in the text, ask a yes/no question about
        every word near it ("does *father* appear near *mother*?" yes) and about a few random words
        ("does *photosynthesis* appear near *mother*?" no). Each answer is a logistic regression on the dot
        product of two vectors, so the gradient is two lines, written out by hand:
    """)
    step.show(negative_sampling)
    texts = load_documents("stories") + load_documents("education_qa/train", "output")
    config = Word2VecConfig(dim=step.pick(32, 50), epochs=step.pick(3, 10), min_count=3, seed=0)
    step.figure("texts (stories and Q&A answers)", len(texts))
    step.figure("vector size", config.dim)
    step.figure("passes over the text", config.epochs)
    vectors = train_word2vec(texts, config, quiet=step.quick)
    vectors.save(step.output("6.1"))
    step.figure("words with a vector (seen at least 3 times)", len(vectors.words))
    words = step.figure("running words of the text that have a vector", int(sum(vectors.counts)))

    step.say("The **cosine** of two vectors says how alike two words are: 1 same direction, 0 unrelated.")
    for word in PROBES:
        neighbours = vectors.most_similar(word, k=4)
        step.figure(f"nearest to '{word}'", ", ".join(f"{other} {cosine:.2f}" for other, cosine in neighbours))
    step.say(f"""
        Sums and differences of vectors answer some **analogies**: *boy* is to *girl* as *father* is to the
        word nearest to girl - boy + father. Trained on 100 billion words of news, word2vec finds *queen*
        from king - man + woman; on our {words:,} words it is a lucky draw:
    """)
    for a, b, c, hoped in ANALOGIES:
        found = vectors.analogy(a, b, c)
        step.figure(f"{a} : {b} = {c} : ?", f"{found} (hoped for: {hoped})")
    step.say("""
        The neighbours come from nothing but counting and random questions: no dictionary, no labels.
        They also show what *this* text is about, since a word's neighbours are the words it keeps company
        with here. With so little text most cosines are high (the vectors crowd into one direction); more
        text spreads them out. The vectors are saved for the next step, which draws them.
    """)
