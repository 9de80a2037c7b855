package provider

import (
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/resource"
)

// What each resource and data source implements, checked by the compiler:
// a method whose signature drifts from the framework's stops the build
// instead of being silently never called.
var (
	_ resource.ResourceWithConfigure      = (*accessRoleResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*accessRoleResource)(nil)
	_ resource.ResourceWithImportState    = (*accessRoleResource)(nil)
	_ resource.ResourceWithValidateConfig = (*accessRoleResource)(nil)

	_ resource.ResourceWithConfigure      = (*bootstrapPolicyResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*bootstrapPolicyResource)(nil)
	_ resource.ResourceWithImportState    = (*bootstrapPolicyResource)(nil)
	_ resource.ResourceWithValidateConfig = (*bootstrapPolicyResource)(nil)

	_ resource.ResourceWithConfigure      = (*databaseResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*databaseResource)(nil)
	_ resource.ResourceWithImportState    = (*databaseResource)(nil)
	_ resource.ResourceWithValidateConfig = (*databaseResource)(nil)

	_ resource.ResourceWithConfigure      = (*roleTrustResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*roleTrustResource)(nil)
	_ resource.ResourceWithImportState    = (*roleTrustResource)(nil)
	_ resource.ResourceWithValidateConfig = (*roleTrustResource)(nil)

	_ resource.ResourceWithConfigure      = (*policyShardsResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*policyShardsResource)(nil)
	_ resource.ResourceWithImportState    = (*policyShardsResource)(nil)
	_ resource.ResourceWithValidateConfig = (*policyShardsResource)(nil)

	_ resource.ResourceWithModifyPlan = (*listenerPortsResource)(nil)

	_ datasource.DataSource                   = (*bootstrapDocDataSource)(nil)
	_ datasource.DataSourceWithConfigure      = (*databasesDataSource)(nil)
	_ datasource.DataSourceWithConfigure      = (*shardPlanDataSource)(nil)
	_ datasource.DataSourceWithValidateConfig = (*proxyConfigDataSource)(nil)
)
