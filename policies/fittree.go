package policies

// fitTree answers "which is the first bin with at least n characters left?"
// in O(log bins): a segment tree of the maximum remaining capacity. First fit
// over thousands of documents stays fast at 100k databases.
type fitTree struct {
	size int
	max  []int
}

func newFitTree(n int) *fitTree {
	size := 1
	for size < n {
		size <<= 1
	}
	t := &fitTree{size: size, max: make([]int, 2*size)}
	for i := range t.max {
		t.max[i] = -1
	}
	return t
}

// set records the remaining capacity of bin i; -1 closes it.
func (t *fitTree) set(i, v int) {
	i += t.size
	t.max[i] = v
	for i >>= 1; i > 0; i >>= 1 {
		t.max[i] = max(t.max[2*i], t.max[2*i+1])
	}
}

// first returns the lowest bin with remaining capacity >= need, or -1.
func (t *fitTree) first(need int) int {
	if t.max[1] < need {
		return -1
	}
	i := 1
	for i < t.size {
		if t.max[2*i] >= need {
			i = 2 * i
		} else {
			i = 2*i + 1
		}
	}
	return i - t.size
}
