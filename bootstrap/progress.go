package bootstrap

// Progress is told about each step of a long run, and about waits between
// them (a lease held by another apply, IAM not yet showing a new role,
// throttling): a run that waits says why. The command line draws it.
type Progress interface {
	Start(total int)
	Step(i int, r StepResult, err error)
	// Note says why the run is waiting.
	Note(msg string)
	Done()
}

// NoProgress says nothing.
type NoProgress struct{}

func (NoProgress) Start(int)                   {}
func (NoProgress) Step(int, StepResult, error) {}
func (NoProgress) Note(string)                 {}
func (NoProgress) Done()                       {}
