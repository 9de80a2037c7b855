// Package planworld puts what an rdsgate plan says IAM will hold into
// iamcheck's independent model, so tests can judge a plan, or compare what
// IAM holds before and after with what the plan promised.
package planworld

import (
	"github.com/rdsgate/rdsgate/policies"
	"github.com/rdsgate/rdsgate/test/iamcheck"
)

// Add writes the plan's principals, trust policies and documents into w.
func Add(w *iamcheck.World, p *policies.Plan) *iamcheck.World {
	for _, pp := range p.Principals {
		wp := w.Principal(string(pp.Kind), pp.Name, pp.ARN)
		if pp.TrustPolicy != nil {
			wp.Trust = pp.TrustPolicy.String()
		}
		for _, pol := range pp.InlinePolicies {
			wp.Inline[pol.Name] = pol.Document.String()
		}
		for _, pol := range pp.ManagedPolicies {
			wp.Managed[pol.ARN] = pol.Document.String()
		}
	}
	return w
}

// Of is the world the plan alone describes.
func Of(p *policies.Plan) *iamcheck.World {
	return Add(iamcheck.New(p.Base.ARN, p.Settings.ExternalID, iamcheck.Quotas{}), p)
}
