"""Exercise 7: predict, then run. What does APO do when beta is above the clip's gate?
(METHOD.md §2, §3 Decision 1, toy/tree_demo.py; about 15 minutes.)

Write your prediction BEFORE you run anything; the checker runs the experiment and passes only if
the prediction matches what it measures. A wrong prediction is the useful outcome: find out why.

The experiment. The tree toy of toy/tree_demo.py (read its docstring): 32 prompts, 8 tokens per
node, completions of 3 tokens, 3 correct leaves per prompt, all on the reference's top-3 paths; a
table of logits `theta` shared by every prompt, Adam (lr 0.1), G = 8 samples per prompt, one
gradient step per batch (so the ratio rho is 1 at every step), 120 steps, K = 3, lam = 1.05, clip
[0.8, 1.2]. Two runs on the same worlds and the same sampling seeds, averaged over seeds 0 and 1:

    grpo          the plain GRPO loss (on this toy: pass@1 rises, pass@64 falls below the base's)
    apo beta=0.5  APO with beta = 0.5, twice the gate you derived in exercise 3. At step 0 every
                  wrong token has r~ = lam - beta * r_anchor = 1.05 - 0.5 = 0.55, below the band.

Both are compared with the untrained base model. Exactly one of these will be measured:

    A  APO's pass@1 gains less than half of what GRPO's gains over the base: the clip freezes
       training.
    B  APO's pass@1 gains at least half of GRPO's gain, and its pass@64 ends within 0.02 of
       GRPO's: the gated run is just GRPO.
    C  APO's pass@1 gains at least half of GRPO's gain, and its pass@64 ends more than 0.02
       above GRPO's.
    D  APO's pass@1 gains at least half of GRPO's gain, and its pass@64 ends more than 0.02
       below GRPO's.

Think about which tokens the clip gates (all of them? only some?), for how long (what happens to
r_anchor as training goes on?), and which of the three forces of METHOD.md §2 that removes.

Then set PREDICTION, write your reason in REASON, and run (about 10 s; -s shows the numbers):
    python -m pytest exercises -q -k ex7 -s
"""

PREDICTION = None  # one of "A", "B", "C", "D"
REASON = ""  # one or two sentences, written before you run it (your lecturer may ask for it)
