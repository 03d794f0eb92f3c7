"""Operations: each module keeps an op's forward and its VJP side by side."""
