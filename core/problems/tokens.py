"""Token ids shared by every problem (the paper's vocabulary of 64 ids).

Values are the low ids: 0..10 for polynomial iteration, 0/1 for the binary problems. Ids 11..57
are unused. The high ids are markers:

    [problem token] x_1 .. x_L [EOI] y_1 .. y_L [EOS] .. [EOS]

The problem token names which iteration the sequence follows (it matters in a mixture), EOI ends
the input, and EOS ends the chain of thought and also pads every row to the dataset's width.
"""

VOCAB_SIZE = 64

POLYNOMIAL = 58
PARITY = 59
BINARY_COPY = 60
BEGIN = 61  # a generic begin token in the paper's vocabulary; unused here
EOI = 62  # end of input
EOS = 63  # end of sequence, and the padding token
PAD = EOS
