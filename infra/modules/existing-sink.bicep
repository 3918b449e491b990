// An existing sink account (any resource group of the subscription): its containers and the identity's write access.
targetScope = 'resourceGroup'

@description('Name of the existing storage account.')
param accountName string

@description('Blob containers to create (kept when they exist).')
param containers array

@description('Principal (object) ID of the function app\'s user-assigned identity.')
param principalId string

@description('Grant the identity Storage Blob Data Contributor here (main.bicep\'s assignRoles).')
param assignRole bool

// Storage Blob Data Contributor (docs/deploy.md, role table).
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: accountName
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for name in containers: {
    parent: blobs
    name: name
    properties: { publicAccess: 'None' }
  }
]

resource writer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (assignRole) {
  name: guid(account.id, principalId, storageBlobDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
