-- Users for the status sync to act on and to leave alone (load after schema.sql). The comment
-- on each says what the organisation service's registration says, and what the sync does.

INSERT INTO users (email, role, organization_name, registration_number, status) VALUES
    -- Not an organisation account: never synced.
    ('admin@auth.example', 'admin', NULL, NULL, 'active'),
    -- approved -> active
    ('greenfields@org.example', 'organization', 'Greenfields Co-op', 'ORG-2024-0001', 'pending_registration'),
    -- rejected -> suspended
    ('bluewater@org.example', 'organization', 'Bluewater Traders', 'ORG-2024-0002', 'pending_registration'),
    -- certified -> active
    ('northwind@org.example', 'organization', 'Northwind Foods', 'ORG-2024-0003', 'pending_registration'),
    -- draft -> pending_registration (the registration was sent back to draft)
    ('redbrick@org.example', 'organization', 'Red Brick Builders', 'ORG-2024-0004', 'active'),
    -- submitted -> pending_registration: already so, unchanged
    ('silverline@org.example', 'organization', 'Silverline Logistics', 'ORG-2024-0005', 'pending_registration'),
    -- under_review -> pending_registration
    ('oakridge@org.example', 'organization', 'Oakridge Farms', 'ORG-2024-0006', 'suspended'),
    -- clarification -> pending_registration
    ('sunrise@org.example', 'organization', 'Sunrise Textiles', 'ORG-2024-0007', 'active'),
    -- approved -> active: already so, unchanged
    ('harbor@org.example', 'organization', 'Harbor Fisheries', 'ORG-2024-0008', 'active'),
    -- rejected -> suspended
    ('quarry@org.example', 'organization', 'Quarry Stoneworks', 'ORG-2024-0009', 'active'),
    -- not known to the organisation service: left alone
    ('ghost@org.example', 'organization', 'Ghost Holdings', 'ORG-2024-0010', 'active'),
    -- a status the mapping does not know ("withdrawn"): left alone, counted
    ('maple@org.example', 'organization', 'Maple Crafts', 'ORG-2024-0011', 'pending_registration'),
    -- no registration number yet (the registration-number sync's work): not synced
    ('newcomer@org.example', 'organization', 'Newcomer Ltd', NULL, 'pending_registration'),
    -- Not an organisation account: never synced.
    ('asha@mail.example', 'individual', NULL, NULL, 'active'),
    -- not known to the organisation service: left alone
    ('lost@org.example', 'organization', 'Lost Ventures', 'ORG-2024-0012', 'suspended');
